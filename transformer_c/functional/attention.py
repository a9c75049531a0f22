"""attention functions (being written)."""
__all__ = []
