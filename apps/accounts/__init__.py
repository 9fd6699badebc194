"""Applications and their scoped API keys."""
