"""Moved to ``core.errors``; kept for the modules not switched yet (detectors/, the stream
stages). Import ``core.errors`` in new code."""

from core.errors import (
    ConfigError,
    DeliveryError,
    DeliveryGaveUp,
    FetchError,
    InputError,
    InvalidTransition,
    KeyNotFound,
    KeyStoreError,
    KeyStoreUnavailable,
    KeywatchError,
    UnknownFormat,
)

__all__ = [
    "ConfigError",
    "DeliveryError",
    "DeliveryGaveUp",
    "FetchError",
    "InputError",
    "InvalidTransition",
    "KeyNotFound",
    "KeyStoreError",
    "KeyStoreUnavailable",
    "KeywatchError",
    "UnknownFormat",
]
