"""Realistic traffic (``worker.traffic``) and the held-out generator: shapes, labels, physics."""

from __future__ import annotations

import math
from collections import defaultdict

import orjson
import pytest
from click.testing import CliRunner

from benchmarks.heldout_traffic import heldout
from geoip.resolver import GeoResolver
from worker.commands.simulate import command
from worker.traffic import ATTACKS, BENIGN, SITES, dist_km, realistic


@pytest.fixture(scope="module")
def traffic():  # type: ignore[no-untyped-def]
    return realistic(keys=120, days=14, attacks=2, seed=3)


def test_deterministic_and_time_ordered(traffic) -> None:  # type: ignore[no-untyped-def]
    a = [r for _, r in zip(range(20000), traffic.rows(), strict=False)]
    again = realistic(keys=120, days=14, attacks=2, seed=3)
    assert a == [r for _, r in zip(range(20000), again.rows(), strict=False)]
    assert [r[0] for r in a] == sorted(r[0] for r in a)


def test_every_shape_and_attack_is_labelled(traffic) -> None:  # type: ignore[no-untyped-def]
    labels = traffic.labels
    assert {lb.shape for lb in labels} == set(BENIGN)
    attacks = [lb for lb in labels if lb.attack]
    assert sorted({lb.attack for lb in attacks}) == sorted(ATTACKS)
    assert all(len([lb for lb in attacks if lb.attack == a]) == 2 for a in ATTACKS)
    first: dict[str, float] = {}
    rows = list(traffic.rows())
    starts = {lb.key_id: lb.start for lb in attacks}
    for r in rows:
        if r[1] in starts and r[0] == starts[r[1]]:
            first[r[1]] = r[0]
    assert set(first) == set(starts)  # each attack's first request is exactly at its start


def test_nobody_travels_faster_than_a_plane(traffic) -> None:  # type: ignore[no-untyped-def]
    """Benign single-person keys move at plausible speed (travellers fly)."""
    by_ip = {}
    for s in SITES:
        for i in range(6):
            by_ip[s.ip(i)] = s
    people = {
        lb.key_id
        for lb in traffic.labels
        if lb.shape in ("traveller", "human", "office") and lb.attack is None
    }
    last: dict[str, tuple[float, object]] = {}
    moved: defaultdict[str, int] = defaultdict(int)
    for ts, key, ip, *_ in traffic.rows():
        if key not in people:
            continue
        site = by_ip[ip]
        if key in last and last[key][1] is not site:
            t0, s0 = last[key]
            hours = max((ts - t0) / 3600, 1e-6)
            assert dist_km(s0, site) / hours < 1000, key  # type: ignore[arg-type]
            moved[key] += 1
        last[key] = (ts, site)
    assert moved  # the travellers did travel


def test_daylight_saving_moves_office_hours_in_utc() -> None:
    """An office in Berlin starts an hour later in UTC after 2026-10-25."""
    from worker.traffic import local_time

    berlin = next(s for s in SITES if s.tz == "Europe/Berlin")
    before = local_time(berlin, 1792368000.0, 9.0)  # Mon 2026-10-19, 09:00 CEST = 07:00 UTC
    after = local_time(berlin, 1792368000.0 + 7 * 86400, 9.0)  # Mon 10-26, 09:00 CET
    assert (before - 1792368000.0) / 3600 == 7 and (after - 1792972800.0) / 3600 == 8


def test_sites_geolocate_where_claimed() -> None:
    with GeoResolver() as geo:
        for site in SITES:
            for i in (0, 5):
                info = geo.lookup(site.ip(i))
                assert info is not None and (info.country, info.city) == (site.country, site.city)
                assert info.lat is not None and math.isclose(info.lat, site.lat, abs_tol=0.01)


def test_heldout_has_the_same_classes_and_ends_attacks_in_the_data() -> None:
    held = heldout(keys=100, days=21, attacks=1, seed=7)
    labels = held.labels
    assert sorted(lb.attack for lb in labels if lb.attack) == sorted(ATTACKS)
    end = 1804464000.0 + 21 * 86400
    assert all(lb.start < end for lb in labels if lb.attack)


def test_command_realistic(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out, labels = tmp_path / "ev.jsonl", tmp_path / "labels.jsonl"
    res = CliRunner().invoke(
        command,
        ["--realistic", "--keys", "20", "--days", "14", "--attacks", "1", "--seed", "2",
         "--out", str(out), "--labels", str(labels)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    first = orjson.loads(out.read_text().split("\n", 1)[0])
    assert {"ts", "key_id", "ip", "user_agent", "path", "status"} <= set(first)
    rows = [orjson.loads(line) for line in labels.read_text().splitlines()]
    assert len(rows) == 20 and sum(1 for r in rows if r["attack"]) == len(ATTACKS)
    bad = CliRunner().invoke(command, ["--realistic", "--keys", "5", "--days", "7"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
