"""loss functions (being written)."""
__all__ = []
