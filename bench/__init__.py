"""bench: a research benchmark suite for transformer architecture choices."""

__version__ = "0.1.0"
