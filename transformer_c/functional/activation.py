"""activation functions (being written)."""
__all__ = []
