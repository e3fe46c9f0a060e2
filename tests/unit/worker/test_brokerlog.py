"""aiokafka's connection errors become state changes: one line, then a reminder a minute."""

from __future__ import annotations

import logging

from worker.brokerlog import QUIET_S, REMIND_S, BrokerOutageFilter


def record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("aiokafka.client", logging.ERROR, __file__, 1, msg, (), None)


def test_an_outage_is_one_line_then_a_reminder_a_minute() -> None:
    now = [0.0]
    f = BrokerOutageFilter(clock=lambda: now[0])
    shown = []
    for _ in range(int(2 * REMIND_S * 10) + 5):  # ten failures a second for two minutes
        r = record("Unable connect to node with id 1: [Errno 111] Connect call failed")
        if f.filter(r):
            shown.append(r.getMessage())
        now[0] += 0.1
    assert len(shown) == 3
    assert shown[0].startswith("broker unreachable") and "still unreachable" in shown[1]
    now[0] += QUIET_S + 1  # the broker was back for a while: a new outage is news again
    r = record("Unable to update metadata from [1]")
    assert f.filter(r) and r.getMessage().startswith("broker unreachable")


def test_other_messages_pass_untouched() -> None:
    f = BrokerOutageFilter(clock=lambda: 0.0)
    r = record("Heartbeat failed for group x")
    assert f.filter(r) and r.getMessage() == "Heartbeat failed for group x"
