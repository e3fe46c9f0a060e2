"""The ``keywatch`` sub-commands, one module each, loaded lazily by ``worker.cli``."""
