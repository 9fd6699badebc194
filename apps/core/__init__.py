"""Shared plumbing of the HTTP API: the error body, pagination, limits and request metrics."""
