"""Data sources: the built-in ones are ordinary plugins, registered like third-party ones."""

from .base import Batch, DataSource, SyntheticSet

__all__ = ["Batch", "DataSource", "SyntheticSet"]
