"""Threshold rules, alerts, webhook notifications and the retraining queue (issue 6)."""
