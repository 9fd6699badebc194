"""The immutable event log: the base every event table shares, its trigger and its feed."""
