"""Usage events (append-only), ingestion, idempotency and aggregation."""
