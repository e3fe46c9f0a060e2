"""``usage.spike`` (low, medium when it persists): volume far above the key's own burstiness.

Three windows are tested at once: the current minute, the last five minutes and the current
clock hour, each against a decaying maximum of the key's busiest such window (its burstiness:
a developer's paginations, a CI job, a nightly export); thresholds are derived once per hour by
the profile, so per event this is three integer comparisons. The 5-minute and hour windows sum
the volume, so a flood that pauses (2 minutes in every 5) is caught as well as a steady one.
A signal is raised when a window crosses its threshold (once per window, not per request).
Alone it is "low": a first weekly batch looks the same. It becomes "medium" once the key's
volume incident has lasted ``volume_escalate_s``, or at once when the flood is intermittent (a
hot minute, a quiet one, a hot one again within the ring's 16 minutes: a duty-cycled flood),
or at once for a burst: a minute an order of magnitude over the key's busiest whose extra
volume goes to one endpoint, in an hour of day the key works in (see ``_burst``). Combined with
a new place, network or a sudden spread it is compromise evidence (see the policy). Traffic
from a place the key has not established, by a client that is not the key's own, is also tested
hourly against the key's typical busy hour (not its batch peaks): a key whose weekly batch runs
at 10k/hour is still flooded when a new country sends it 1k/hour.
"""

from __future__ import annotations

from detectors.config import EvalContext
from detectors.endpoint_shift import endpoint_name
from detectors.model import AccessEvent, Signal
from detectors.profile import ESTABLISHED, RING, KeyProfile
from detectors.record import ESTABLISHED_DAYS

TYPE = "usage.spike"


def _from_new_place(profile: KeyProfile, ctx: EvalContext) -> bool:
    """Whether a client other than the key's own comes from a place the key has not established.

    The owner's own client abroad is a traveller, whose sessions are judged by the key's
    burstiness only (the 1-minute, 5-minute and hour maxima).
    """
    geo = ctx.geo
    if geo is None or geo.country is None:
        return False
    if ctx.agent and profile.agent_state(ctx.agent) == ESTABLISHED:
        return False
    if profile.country_state(geo.country) != ESTABLISHED:
        return True
    return bool(ctx.place) and profile.place_state(ctx.place) != ESTABLISHED


def _resumed(ring: list[int], minute: int, hot: int) -> bool:
    """A hot minute, then a quiet one (under a quarter of the threshold), then this hot one."""
    quiet = False
    for k in range(1, RING):
        n = ring[(minute - k) % RING]
        if n <= hot // 4:
            quiet = True
        elif n >= hot and quiet:
            return True
    return False


def _burst(profile: KeyProfile, recent: int, ctx: EvalContext) -> tuple[int, float] | None:
    """The endpoint that takes a burst's extra volume, and the share of it it takes; or None.

    A job's first run and a harvest both concentrate on one endpoint, a launch or a backfill
    follows the key's mix. The extra volume on an endpoint is this hour's requests on it
    beyond its usual share of the hour, as a fraction of what the last five minutes would have
    added there had they all gone to it. Only in an hour of day the key has worked in on
    ``ESTABLISHED_DAYS`` days (not the off-hours test's tolerant mask: a batch's own first hour
    would make its second one usual): there, the key's history is what its application does,
    and ten times its busiest minute on one resource is not that. A job's first run in a
    quiet hour (a nightly batch) looks like a flood and is left to the other tests.
    """
    cfg = ctx.config
    if profile.hour_slots[ctx.hour_of_day] < ESTABLISHED_DAYS:
        return None
    learned = hour = 0
    for past, now in profile.paths.values():
        learned += past
        hour += now
    if learned < cfg.endpoint_min_history or hour <= 0:
        return None
    best, best_share = -1, 0.0
    for name, (past, now) in profile.paths.items():
        usual = past / learned
        if usual < 1.0:
            share = (now - usual * hour) / ((1.0 - usual) * recent)
            if share > best_share:
                best, best_share = name, share
    return (best, best_share) if best_share >= cfg.burst_share else None


def evaluate(event: AccessEvent, profile: KeyProfile, ctx: EvalContext) -> list[Signal]:
    """Signal when this event makes one of the three windows cross its threshold."""
    if not profile.vol_hit:  # computed while counting: the common case costs nothing here
        return []
    minute = int(event.ts) // 60
    m1 = profile.ring[minute % RING]
    m5 = m1 + profile.base5
    h = profile.cur_count
    burst = m1 == profile.tb
    crossed = burst or m1 == profile.t1 or m5 == profile.t5 or h == profile.t60
    if not crossed and (h < profile.t_level or not _from_new_place(profile, ctx)):
        return []
    if not profile.learned or ctx.late or minute != profile.ring_minute:
        return []
    cfg, pk = ctx.config, profile.peaks
    ratios = [
        m1 / max(pk[0], cfg.peak_floor[0]),
        m5 / max(pk[1], cfg.peak_floor[1]),
        h / max(pk[2], cfg.peak_floor[2]),
    ]
    windows = [w for w, hit in (("1m", m1 >= profile.t1), ("5m", m5 >= profile.t5),
                                ("1h", h >= profile.t60)) if hit]  # fmt: skip
    if not windows:
        windows.append("1h_vs_typical_hour")
        ratios.append(h / max(profile.level, 1.0))
    severity = "low"
    inc = profile.incidents.get(TYPE)
    if inc is not None and event.ts - inc.opened >= cfg.volume_escalate_s:
        severity = "medium"  # it persists: notify someone
    elif m1 == profile.t1 and _resumed(profile.ring, minute, profile.t1):
        severity = "medium"  # a flood that pauses and resumes is not a batch job
        windows.append("intermittent")
    extra: dict[str, object] = {}
    if burst and severity == "low":
        on = _burst(profile, m5, ctx)
        if on is not None:
            severity = "medium"  # ten times the key's busiest minute, on one resource
            windows.append("burst")
            extra = {"endpoint": endpoint_name(on[0]), "burst_share": round(min(on[1], 1.0), 2)}
    evidence = {
        "observed_per_minute": m1,
        "observed_per_5min": m5,
        "observed_per_hour": h,
        "usual_max": [round(v, 1) for v in pk],
        "ratio": round(max(ratios), 1),
        "windows": windows,
        **extra,
    }
    return [Signal(TYPE, severity, evidence)]  # type: ignore[arg-type]
