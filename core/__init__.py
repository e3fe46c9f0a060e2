"""The shared core every keywatch package may import: errors, key format, redaction, retries.

It imports nothing from ``worker``, ``detectors``, ``scanners``, ``geoip`` or ``gateway``, so
the pure packages depend on it and not on the worker.
"""
