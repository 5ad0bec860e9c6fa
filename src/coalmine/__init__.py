"""coalmine: a canary manager."""

__version__ = "0.1.0"
