"""embedding functions (being written)."""
__all__ = []
