"""The Attaché server: FastAPI service, storage, audit, operator CLI."""
