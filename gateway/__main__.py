"""`python -m gateway`."""

from .server import main

main()
