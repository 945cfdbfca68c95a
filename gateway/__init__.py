"""The Litestar service: app factory, auth, routes, storage, crypto, idempotency, CLI."""
