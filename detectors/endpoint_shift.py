"""``usage.endpoint_shift`` (medium): abnormal volume on an endpoint the key rarely uses.

A key's own traffic is its application's calls, and their mix is stable: a few endpoints carry
most of it. When the application does more (a launch, a backfill, a batch paging through its
orders) the extra volume follows that mix or its busiest endpoints. Harvesting one resource with
a stolen key (paging through users, invoices, files) puts the volume on whichever endpoint holds
what the attacker wants, usually not the key's favourite. So when a volume window is over its
threshold (see ``usage.spike``) and one endpoint carries at least ``endpoint_share`` of this
hour's requests but less than 1/``endpoint_ratio`` of that share of the key's mix, the flood is
not more of the key's usual work: notify. This catches a flood that pauses (a duty cycle) in its
first burst, which volume alone cannot tell from a first weekly batch. A first export job on an
endpoint the key never used looks the same and is notified once; its hour is then learned (the
mix is not learned while the key is throttled or revoked). Endpoints are the path's first two
segments ("/v1/users/4711?page=2" -> "/v1/users").
"""

from __future__ import annotations

from core.redaction import redact_text
from detectors.config import EvalContext
from detectors.model import AccessEvent, Signal
from detectors.profile import OTHER_PATH, RING, KeyProfile, endpoint_key

TYPE = "usage.endpoint_shift"
_MAX_LEN = 48
_CACHE_MAX = 4096
CACHE: dict[str, int] = {}  # request path -> endpoint id (the analyzer reads it inline)
_NAMES: dict[int, str] = {}  # endpoint id -> name, for evidence (ids are what profiles keep)
_IDS: dict[str, int] = {}  # cut path -> endpoint id


def _cut(path: str) -> str:
    """The path up to its third "/" (or its query string): cheap, not yet redacted."""
    end = len(path)
    for sep in "?#":
        k = path.find(sep, 0, end)
        if k >= 0:
            end = k
    i = path.find("/", 1, end)
    j = path.find("/", i + 1, end) if i > 0 else -1
    return path[: j if j >= 0 else end]


def endpoint_of(path: str) -> str:
    """The endpoint of a request path: its first two segments, without the query."""
    return redact_text(_cut(path))[:_MAX_LEN]


def endpoint_id(path: str) -> int:
    """The id of a request path's endpoint (cached per path and per endpoint)."""
    key = CACHE.get(path)
    if key is None:
        cut = _cut(path)  # paths naming records ("/v1/users/4711") share their endpoint
        key = _IDS.get(cut)
        if key is None:
            name = redact_text(cut)[:_MAX_LEN]
            key = endpoint_key(name)
            if len(_IDS) < _CACHE_MAX:
                _IDS[cut] = key
            if len(_NAMES) < _CACHE_MAX:
                _NAMES[key] = name
        if len(CACHE) < _CACHE_MAX:
            CACHE[path] = key
    return key


def endpoint_name(key: int) -> str:
    """The name of an endpoint id for evidence ("(other endpoints)" for the shared slot)."""
    return "(other endpoints)" if key == OTHER_PATH else _NAMES.get(key, f"#{key}")


def evaluate(event: AccessEvent, profile: KeyProfile, ctx: EvalContext) -> list[Signal]:
    """Signal when the hour's abnormal volume sits on an endpoint the key rarely used."""
    if not profile.learned or ctx.late:
        return []
    minute = int(event.ts) // 60
    if minute != profile.ring_minute:
        return []
    m1 = profile.ring[minute % RING]
    h = profile.cur_count
    if m1 < profile.t1 and m1 + profile.base5 < profile.t5 and h < profile.t60:
        return []  # no volume window is over its threshold: a new endpoint is a new feature
    inc = profile.incidents.get(TYPE)
    if inc is not None and inc.last_seen >= profile.cur_hour * 3600:
        return []  # said once per hour is enough
    cfg = ctx.config
    learned = hour = 0
    top, top_n = OTHER_PATH, -1
    for name, (past, now) in profile.paths.items():
        learned += past
        hour += now
        if now > top_n:
            top, top_n = name, now
    if learned < cfg.endpoint_min_history or hour <= 0:
        return []
    share = top_n / hour
    usual = profile.paths[top][0] / learned
    if share < cfg.endpoint_share or share < cfg.endpoint_ratio * usual:
        return []
    evidence = {
        "endpoint": endpoint_name(top),
        "requests_this_hour": top_n,
        "share_this_hour": round(share, 2),
        "usual_share": round(usual, 3),
    }
    return [Signal(TYPE, "medium", evidence)]
