"""Runtime shared by every Dropfile process, written once: settings, logging, keys, JWT
verification, the gRPC server bootstrap and clients for PostgreSQL, Redis and AWS."""
