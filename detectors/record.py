"""The serialized key profile: a typed, versioned msgspec record (array-like msgpack).

Fields are positional (``array_like``): new fields are only ever appended, with defaults, so an
older record (a shorter array) still decodes and gets the defaults. Version 1 (the exact-length
msgpack array written before this module existed) is exactly the first 19 fields; ``migrate``
brings its tables to the current shape. A fixture of real v1 profiles lives in
``tests/fixtures/profile_v1.json``.
"""

from __future__ import annotations

from typing import Any

import msgspec

VERSION = 2
ESTABLISHED_DAYS = 3  # a v1 entry was "known" at once: migrated entries count as established


class ProfileRecord(msgspec.Struct, array_like=True, omit_defaults=False):
    """One key's profile as stored (see ``KeyProfile`` for the meaning of each field)."""

    version: int
    first_ts: int
    last_ts_ms: int
    learn_start: int
    learned: bool
    total_events: int
    countries: dict[str, list[int]]  # cc -> [count, last_seen_s, days_seen]
    places: dict[str, list[Any]]  # "CC/City" -> [count, last_seen_s, lat, lon, days_seen]
    asns: dict[int, list[int]]  # asn -> [count, last_seen_s, days_seen]
    how: bytes
    hod: bytes
    level: float
    hour_slots: bytes  # 24 counts, one byte each (16-bit before the endpoint mix; both decode)
    cur_hour: int
    cur_count: int
    ring_minute: int
    ring: list[int]
    loc: list[Any] | None
    incidents: dict[str, list[Any]]
    # ---- version 2 (appended) ----
    peaks: list[float] = []  # decaying maxima: busiest minute, 5 minutes, hour
    hour_max: list[int] = []  # this hour's busiest minute and 5 minutes so far
    known: bytes = b""  # hashed set of established countries/places/networks/agents
    spread: list[int] = []  # established countries, established places
    hour_new: list[str] = []  # countries not established seen this hour
    agents: dict[str, list[int]] = {}  # user-agent family -> [last_seen_day, days_seen]
    held: list[float] = []  # volume maxima seen while a volume incident was open
    hour_nets: bytes = b""  # 128-bit sketch of this hour's client networks (b"": none)
    net_peak10: int = 0  # decaying maximum of distinct client networks an hour, in tenths
    paths: bytes = b""  # endpoint mix: uint16 triples (endpoint id, closed hours', this hour's)


_DECODER = msgspec.msgpack.Decoder(ProfileRecord)
_ENCODER = msgspec.msgpack.Encoder()


def encode(rec: ProfileRecord) -> bytes:
    """Record -> bytes."""
    return _ENCODER.encode(rec)


def decode(raw: bytes) -> ProfileRecord:
    """Bytes -> record of the current version; ``ValueError`` when corrupt or unknown."""
    try:
        rec = _DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
        raise ValueError(f"corrupt key profile: {exc}") from exc
    if rec.version == 1:
        return migrate(rec)
    if rec.version != VERSION:
        raise ValueError(f"unknown key profile version {rec.version}")
    return rec


def migrate(rec: ProfileRecord) -> ProfileRecord:
    """v1 -> v2: tables gain a days-seen column; what v1 knew stays known (established)."""
    for table in (rec.countries, rec.asns):
        for entry in table.values():
            entry.append(ESTABLISHED_DAYS)
    for entry in rec.places.values():
        entry.append(ESTABLISHED_DAYS)
    rec.version = VERSION
    return rec
