"""REST ingestion of predictions and feedback: validation, idempotency, the fast write path."""
