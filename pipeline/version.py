"""The version that sidecars and reports record."""

__version__ = "0.1.0"
