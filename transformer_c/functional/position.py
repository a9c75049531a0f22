"""position functions (being written)."""
__all__ = []
