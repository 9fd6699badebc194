"""Projections of the event log: the machinery (base.py) and each projection's folding SQL."""
