"""Network class of an autonomous system: hosting, vpn, tor, or isp (people), kept as data.

The table (``geoip/network_classes.toml``, or the file ``KEYWATCH_NETWORK_CLASSES`` names, which
replaces it) maps well-known ASNs to a class; any other ASN is ``isp``. It is loaded once and
handed to ``GeoResolver``, which puts the class on each ``GeoInfo`` (cached per IP, so the hot
path pays nothing). Only meaningful with an ASN database: without one no ASN, no class.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from core.errors import ConfigError

ISP = "isp"  # not listed: residential, mobile, business access
CLASSES = frozenset({"hosting", "vpn", "tor", ISP})
# Classes where anyone can rent a machine or hide behind an exit: a key that never came from
# one doing so is location evidence (network.new_class).
RENTED = frozenset({"hosting", "vpn", "tor"})
DEFAULT_PATH = Path(__file__).with_name("network_classes.toml")


def load_classes(path: Path | None = None) -> Mapping[int, str]:
    """The ASN -> class table from ``path`` (default: the shipped one); ``ConfigError`` if bad."""
    src = path if path is not None else DEFAULT_PATH
    try:
        with src.open("rb") as fh:
            doc = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read network classes {src}: {exc}") from exc
    table = doc.get("classes")
    if not isinstance(table, dict):
        raise ConfigError(f'{src}: no [classes] table (ASN = "class")')
    out: dict[int, str] = {}
    for key, cls in table.items():
        if not key.isdigit() or not 0 < int(key) < 1 << 32:
            raise ConfigError(f"{src}: {key!r} is not an AS number")
        if cls not in CLASSES:
            raise ConfigError(f"{src}: AS{key}: class {cls!r} is not one of {sorted(CLASSES)}")
        out[int(key)] = cls
    return MappingProxyType(out)


def class_of(classes: Mapping[int, str], asn: int | None) -> str | None:
    """The class of ``asn`` (``isp`` when not listed); None without an ASN."""
    return None if asn is None else classes.get(asn, ISP)
