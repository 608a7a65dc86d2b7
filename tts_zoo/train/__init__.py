"""The generic training loop."""
