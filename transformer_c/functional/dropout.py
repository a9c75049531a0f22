"""dropout functions (being written)."""
__all__ = []
