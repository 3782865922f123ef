"""activations kernels (placeholder until they land)."""

__all__ = []
