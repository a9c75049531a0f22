"""optim functions (being written)."""
__all__ = []
