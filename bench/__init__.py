"""`make bench`: Dropfile measured against the tools it replaces, on this machine."""
