"""One error tree for keywatch; adapters convert third-party exceptions at the edge.

KeywatchError
├── ConfigError              bad settings, policy or rules file (fatal at start)
├── InputError               a message, event, webhook or file keywatch cannot use
│   └── UnknownFormat        no access-log parser recognises the message
├── KeyStoreError
│   ├── KeyNotFound          no key with that id or hash
│   ├── InvalidTransition    e.g. rotating a revoked key
│   └── KeyStoreUnavailable  the database or Redis cannot be reached (retryable)
├── DeliveryError            an alert sink refused or failed (retryable)
│   └── DeliveryGaveUp       retries exhausted: the alert goes to the dead letter
└── FetchError               a code host API failed (retryable)
"""

from __future__ import annotations


class KeywatchError(Exception):
    """Root of every error keywatch raises on purpose."""


class ConfigError(KeywatchError):
    """A setting, policy or rule file is invalid."""


class InputError(KeywatchError):
    """Input that cannot be processed; carries a short machine-readable reason."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class UnknownFormat(InputError):
    """No parser recognises the message."""

    def __init__(self, message: str = "unrecognised access-log format") -> None:
        super().__init__(message, reason="unknown_format")


class KeyStoreError(KeywatchError):
    """The key store refused or failed an operation."""


class KeyNotFound(KeyStoreError):
    """No key matches the id or hash."""


class InvalidTransition(KeyStoreError):
    """The key's status does not allow the operation."""


class KeyStoreUnavailable(KeyStoreError):
    """The database or Redis is unreachable; the operation may be retried."""


class DeliveryError(KeywatchError):
    """An alert sink failed; retryable."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeliveryGaveUp(DeliveryError):
    """Retries are exhausted."""


class FetchError(KeywatchError):
    """A code host (GitHub, GitLab) request failed; retryable."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
