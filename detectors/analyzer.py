"""The single entry point of detection: one key's batch of events -> updated profile + alerts.

The Faust agent and offline replay both call ``Analyzer.analyze``. Per event (in event-time
order) the analyzer counts the event into the rate state, runs every registered detector, records
where the event came from, and routes signals through the key's incidents; the policy decides
severity and action for what is open. The profile is touched in memory only; the caller persists
it once per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

from detectors import (
    endpoint_shift,
    incidents,
    key_in_query,
    revoked_in_use,
    second_key,
    usage_spike,
)
from detectors.config import DetectorConfig, EvalContext, agent_family, place_of
from detectors.model import AccessEvent, Alert, GeoInfo, KeyContext, Signal
from detectors.policy import DefaultPolicy, Policy
from detectors.profile import KeyProfile
from detectors.registry import DETECTORS, NEEDS_ASN, PER_EVENT_TYPES, Evaluate
from detectors.summary import summarize
from geoip.resolver import GeoResolver

_BY_TS = attrgetter("ts")


def _same_where(a: GeoInfo | None, b: GeoInfo | None) -> bool:
    """Same location for the context detectors: country, city, coordinates, ASN, client network.

    The client network (/24) counts: network.fanout must see each new network of an hour.
    """
    if a is None or b is None:
        return False
    return (
        a.network == b.network
        and a.city == b.city
        and a.country == b.country
        and a.asn == b.asn
        and a.lat == b.lat
    )


class Analyzer:
    """Runs the detectors, incidents and policy over one key's events at a time."""

    def __init__(
        self,
        geo: GeoResolver | None,
        policy: Policy | None = None,
        config: DetectorConfig | None = None,
        detectors: Sequence[tuple[str, Evaluate]] | None = None,
    ) -> None:
        self.geo = geo
        self.policy: Policy = policy or DefaultPolicy()
        self.config = config or DetectorConfig()
        chosen = DETECTORS if detectors is None else detectors
        # The per-event detectors have a trigger checked inline (a volume window crossed while
        # counting; the key in the query string; a second key), which saves a call per event.
        by_type = dict(chosen)
        self._spike = by_type.get(usage_spike.TYPE)
        self._shift = by_type.get(endpoint_shift.TYPE)
        self._in_query = by_type.get(key_in_query.TYPE)
        self._second_key = by_type.get(second_key.TYPE)
        self._dead_key = by_type.get(revoked_in_use.TYPE)
        # Without an ASN database the network detectors have nothing to judge: not run at all.
        skip = PER_EVENT_TYPES if geo is not None and geo.has_asn else PER_EVENT_TYPES | NEEDS_ASN
        self._per_context = tuple(fn for t, fn in chosen if t not in skip)

    def analyze(
        self,
        key: KeyContext,
        profile: KeyProfile | None,
        events: Sequence[AccessEvent],
        detected_at: float,
    ) -> tuple[KeyProfile, list[Alert]]:
        """Process one key's events (any order) and return its updated profile and new alerts.

        ``detected_at`` is the caller's clock (wall clock in the worker; replay may pass the
        batch's newest event time). Events more than ``max_future_skew_s`` ahead of it come from
        a skewed clock: they are profiled at ``detected_at`` so one bad gateway cannot push the
        key's notion of "now" into the future (their alerts keep the event's own time).
        """
        prof = profile if profile is not None else KeyProfile()
        alerts: list[Alert] = []
        if not events:
            return prof, alerts
        cfg, ctx = self.config, EvalContext(self.config)
        lookup = self.geo.lookup if self.geo is not None else None
        spike, in_query, per_context = self._spike, self._in_query, self._per_context
        second = self._second_key
        refused = revoked_in_use.REFUSED
        # Context detectors depend on the event's location (country, place, network), client
        # and clock hour only, and on profile state that changes at most per day or hour: after
        # an event for which they all returned nothing, an event with the same location, client
        # and hour gets nothing from them either, so they are skipped (the hot path's main
        # saving). Impossible travel agrees: the previous event left the key at this place.
        quiet_geo: GeoInfo | None = None
        quiet_agent, quiet_hour = "", -1
        count_event, observe_geo = prof.count_event, prof.observe_geo
        horizon = detected_at + cfg.max_future_skew_s
        ordered = sorted(events, key=_BY_TS) if len(events) > 1 else events
        last_ip: str | None = None
        # A batch's few addresses alternate: each is resolved (and named) once per batch.
        located: dict[str, tuple[GeoInfo | None, str]] = {}
        geo: GeoInfo | None = None
        place = ""
        last_ua: str | None = None
        agent, agent_day, observe_agent = "", -1, prof.observe_agent
        # Requests per endpoint this hour (the key's endpoint mix, usage.endpoint_shift).
        paths, endpoints, endpoint_id = prof.paths, endpoint_shift.CACHE, endpoint_shift.endpoint_id
        shift = self._shift
        # A run: consecutive non-late events with the very GeoInfo object of the non-late event
        # before them (the resolver caches one object per IP). Their country/ASN/place counts
        # are added in one step when the run ends (``KeyProfile.add_geo_run``): nothing reads a
        # count meanwhile (only impossible travel does, and it stops early while the event's
        # place is the last location) and only ``observe_geo``, which ends the run, evicts.
        # A run never crosses a UTC midnight: days-seen counts must not depend on batching.
        prev: GeoInfo | None = None
        run_n, run_last, run_day = 0, 0.0, -1
        for ev in ordered:
            ts = ev.ts if ev.ts <= horizon else detected_at
            if ev.ip != last_ip:
                last_ip = ev.ip
                where = located.get(last_ip)
                if where is None:
                    geo = lookup(last_ip) if lookup is not None else None
                    where = located[last_ip] = (geo, place_of(geo))
                geo, place = where
                ctx.geo, ctx.place = geo, place
            if ev.user_agent != last_ua:
                last_ua = ev.user_agent
                agent = ctx.agent = agent_family(last_ua)
                agent_day = -1
            if ev.auth in refused:  # not served: evidence only, never the key's usage
                if self._dead_key is not None:
                    found = self._dead_key(ev, prof, ctx)
                    if found:
                        alert = self._incident(key, prof, ev, ts, geo, found, detected_at)
                        if alert is not None:
                            alerts.append(alert)
                        revoked_in_use.remember(prof, ev)  # its network, for the next attempt
                continue
            late = ctx.late = count_event(ts, cfg)
            ep = endpoints.get(ev.path)
            if ep is None:
                ep = endpoint_id(ev.path)
            pe = paths.get(ep)
            if pe is not None:
                pe[1] += 1
            else:
                prof.count_path(ep)
            its = int(ts)
            day, hour = its // 86400, its // 3600
            ctx.hour_of_day = hour % 24
            same = geo is prev and geo is not None and not late and day == run_day
            if run_n and not same:
                prof.add_geo_run(prev, place_of(prev), run_n, int(run_last))  # type: ignore[arg-type]
                run_n = 0
            signals: list[Signal] | None = None
            if prof.vol_hit:
                if spike is not None:
                    signals = spike(ev, prof, ctx) or None
                if shift is not None:
                    found = shift(ev, prof, ctx)
                    if found:
                        signals = found if signals is None else signals + found
            if ev.key_in_query and in_query is not None:
                found = in_query(ev, prof, ctx)
                if found:
                    signals = found if signals is None else signals + found
            if ev.extra_key_hash is not None and second is not None:
                found = second(ev, prof, ctx)
                if found:
                    signals = found if signals is None else signals + found
            if (
                late
                or hour != quiet_hour
                or agent != quiet_agent
                or (geo is not quiet_geo and not _same_where(geo, quiet_geo))
            ) and prof.learned:  # every context detector is silent while the key learns
                quiet_hour = -1
                before = signals
                for evaluate in per_context:
                    found = evaluate(ev, prof, ctx)
                    if found:
                        signals = found if signals is None else signals + found
                if signals is before and not late:
                    quiet_geo, quiet_agent, quiet_hour = geo, agent, hour
            # Incidents before observing: an escalated incident must stop this very event from
            # establishing its place or client (an attacker's third day).
            if signals:
                alert = self._incident(key, prof, ev, ts, geo, signals, detected_at)
                if alert is not None:
                    alerts.append(alert)
            if same:
                run_n += 1
                if ts > run_last:  # int() is monotonic: take it once, at the end
                    run_last = ts
                if place:
                    prof.loc_ts = ts
            elif geo is not None:
                observe_geo(ts, geo, place, late)
                run_last, run_day = 0.0, day
            prev = None if late else geo
            if agent and (day != agent_day or late):
                observe_agent(ts, agent)
                agent_day = -1 if late else day
        if run_n:
            prof.add_geo_run(prev, place, run_n, int(run_last))  # type: ignore[arg-type]
        return prof, alerts

    def _incident(
        self,
        key: KeyContext,
        prof: KeyProfile,
        ev: AccessEvent,
        ts: float,
        geo: GeoInfo | None,
        signals: list[Signal],
        detected_at: float,
    ) -> Alert | None:
        update = incidents.record(prof, signals, ts, self.config.cooldown_s)
        decision = self.policy.decide(key, update.open_signals, ev, geo)
        level = incidents.rank(decision)
        if not incidents.should_alert(prof, update, level):
            return None
        if update.opened:
            identity = "+".join(sorted(s.type for s in update.opened)) + f"@{round(ts)}"
        else:
            identity = "+".join(
                f"{t}@{round(inc.opened)}" for t, inc in sorted(prof.incidents.items())
            )
        aid = incidents.alert_id(key.key_id, ev.ts, identity, level)
        incidents.mark_alerted(prof, aid, level)
        extra: dict[str, object] = {"incident": {t: i.count for t, i in prof.incidents.items()}}
        if decision.reasons:
            extra["reasons"] = list(decision.reasons)
        return Alert(
            id=aid,
            kind="anomaly",
            key_id=key.key_id,
            account_id=key.account_id,
            ts=ev.ts,
            detected_at=detected_at,
            severity=decision.severity,
            action=decision.action,
            signals=update.open_signals,
            summary=summarize(key.key_id, update.open_signals),
            extra=extra,
        )
