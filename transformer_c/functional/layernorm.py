"""layernorm functions (being written)."""
__all__ = []
