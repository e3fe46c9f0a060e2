"""keywatch: a streaming guard for API keys."""

__version__ = "0.1.0"
