"""Key store: SQL source of truth, the gateway-facing Redis view and key-action announcements."""
