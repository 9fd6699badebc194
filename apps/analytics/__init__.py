"""Aggregation of the event log into projections; A/B statistics; segment performance; drift."""
