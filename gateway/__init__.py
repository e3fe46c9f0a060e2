"""keywatch's gateway half: verify keys, enforce limits and keywatch's decisions, publish.

One core (``gateway.core.GatewayCore``), two faces: the ``keywatch gateway`` authorization
service (``gateway.service``) and the ASGI ``KeywatchMiddleware`` (``gateway.middleware``).
"""

from __future__ import annotations

from gateway.core import GatewayCore
from gateway.decision import Decision
from gateway.middleware import KeywatchMiddleware
from gateway.settings import GatewaySettings

__all__ = ["Decision", "GatewayCore", "GatewaySettings", "KeywatchMiddleware"]
