"""ccflux reference receiver: PROTOCOL.md v1 over FastAPI, SQLite storage, admin CLI."""
