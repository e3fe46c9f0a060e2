"""Response: turn alerts into key actions (throttle, revoke) through the key service."""
