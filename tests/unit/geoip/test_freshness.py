"""An old City database is reported; a replaced database file is picked up without a restart."""

from __future__ import annotations

import os
import time
from pathlib import Path

from geoip.resolver import GeoResolver, built_at, default_city_db, freshness_warning
from geoip.testdb import write_city_db

LONDON = {"81.2.69.0/24": {"country": "GB", "city": "London", "lat": 51.5, "lon": -0.1}}
MOVED = {"81.2.69.0/24": {"country": "US", "city": "Ashburn", "lat": 39.0, "lon": -77.5}}


def test_the_packaged_2018_snapshot_is_stale() -> None:
    warning = freshness_warning(None)
    assert warning is not None
    assert "built on 2018-" in warning and str(default_city_db()) in warning
    assert "KEYWATCH_GEOIP_CITY_DB" in warning


def test_a_recent_database_is_not_stale(tmp_path: Path) -> None:
    path = write_city_db(tmp_path / "c.mmdb", LONDON)
    assert abs(built_at(path) - time.time()) < 600
    assert freshness_warning(path) is None
    in_200_days = time.time() + 200 * 86400
    stale = freshness_warning(path, now=in_200_days)
    assert stale is not None and "(200 days ago)" in stale


def _replace(path: Path, networks: dict[str, dict[str, object]]) -> None:
    """As geoipupdate does: write a new file beside it, then rename over the old one."""
    tmp = write_city_db(path.with_suffix(".new"), networks)
    os.replace(tmp, path)


def test_a_replaced_database_is_reloaded_without_restart(tmp_path: Path) -> None:
    path = write_city_db(tmp_path / "c.mmdb", LONDON)
    with GeoResolver(path, reload_every_s=0.0) as geo:
        before = geo.lookup("81.2.69.1")
        assert before is not None and before.country == "GB"
        _replace(path, MOVED)
        after = geo.lookup("81.2.69.1")  # the cached answer is dropped with the old database
        assert after is not None and after.country == "US" and after.city == "Ashburn"
        assert geo.reloads == 1
        assert geo.lookup("81.2.69.2") is not None and geo.reloads == 1  # unchanged: no reload


def test_a_broken_database_keeps_the_old_one(tmp_path: Path) -> None:
    path = write_city_db(tmp_path / "c.mmdb", LONDON)
    with GeoResolver(path, reload_every_s=0.0) as geo:
        broken = tmp_path / "broken"
        broken.write_bytes(b"not a database")
        os.replace(broken, path)
        info = geo.lookup("81.2.69.1")
        assert info is not None and info.country == "GB" and geo.reloads == 0
        _replace(path, MOVED)
        info = geo.lookup("81.2.69.1")
        assert info is not None and info.country == "US" and geo.reloads == 1


def test_checks_are_spaced_by_the_interval(tmp_path: Path) -> None:
    path = write_city_db(tmp_path / "c.mmdb", LONDON)
    with GeoResolver(path, reload_every_s=3600) as geo:
        _replace(path, MOVED)
        info = geo.lookup("81.2.69.1")
        assert info is not None and info.country == "GB" and geo.reloads == 0
        assert geo.reload_if_changed() and geo.lookup("81.2.69.1").country == "US"  # type: ignore[union-attr]
