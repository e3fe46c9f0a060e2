"""One module per gateway log format, each with ``NAME``, ``matches(obj)`` and ``parse(obj)``."""
