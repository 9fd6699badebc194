"""A/B experiments and gradual rollouts between model versions, and assignment."""
