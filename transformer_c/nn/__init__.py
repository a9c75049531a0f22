"""Modules (being written)."""
