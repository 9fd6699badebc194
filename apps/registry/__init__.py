"""The model registry: models, immutable versions, aliases and their history."""
