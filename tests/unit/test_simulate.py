"""Simulator: determinism, contract shape, labels, and IPs that really geolocate."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from geoip.resolver import GeoResolver
from worker.commands.simulate import command
from worker.simulate import ATTACK_SITES, ATTACKS, HOME_SITES, simulate


def test_deterministic_and_time_ordered() -> None:
    a = list(simulate(5, 3, seed=4).rows())
    assert a == list(simulate(5, 3, seed=4).rows()) and a != list(simulate(5, 3, seed=5).rows())
    assert [r[0] for r in a] == sorted(r[0] for r in a)


def test_native_events_and_labels() -> None:
    sim = simulate(12, 4, attacks=1, seed=2)
    ev = next(sim.events())
    assert {"ts", "key_id", "ip", "method", "path", "status", "gateway"} <= set(ev)
    assert ev["ts"].endswith("Z")
    assert sorted(lb.attack for lb in sim.labels) == sorted(ATTACKS)
    last_two = sim.start + (sim.days - 2) * 86400
    assert all(last_two <= lb.start < lb.end <= sim.start + sim.days * 86400 for lb in sim.labels)
    assert len({lb.key_id for lb in sim.labels}) == len(ATTACKS)
    attacked = {lb.key_id: lb for lb in sim.labels}
    rows = [
        r
        for r in sim.rows()
        if r[1] in attacked and attacked[r[1]].start <= r[0] <= attacked[r[1]].end
    ]
    assert rows  # the attacks produce traffic


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        simulate(2, 3, attacks=1)  # more attacks than keys
    with pytest.raises(ValueError):
        simulate(10, 3, attacks={"teleport": 1})


def test_sites_geolocate_where_claimed() -> None:
    with GeoResolver() as geo:
        for site in HOME_SITES + ATTACK_SITES:
            for i in range(6):
                info = geo.lookup(site.ip(i))
                assert info is not None and (info.country, info.city) == (site.country, site.city)


def test_command_writes_jsonl(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out, labels = tmp_path / "ev.jsonl", tmp_path / "labels.jsonl"
    res = CliRunner().invoke(
        command,
        [
            "--keys",
            "6",
            "--days",
            "3",
            "--attacks",
            "1",
            "--seed",
            "1",
            "--out",
            str(out),
            "--labels",
            str(labels),
        ],
    )
    assert res.exit_code == 0, res.output
    assert out.read_text().count("\n") > 100 and labels.read_text().count("\n") == 5
    bad = CliRunner().invoke(command, ["--keys", "1", "--attacks", "1"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
