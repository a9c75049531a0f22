"""softmax functions (being written)."""
__all__ = []
