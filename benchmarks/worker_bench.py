"""Worker throughput against the ceiling, in one run, on the embedded broker.

    /work/venv/bin/python benchmarks/worker_bench.py [--events 200000] [--keys 2000]
        [--processes 1,0,4] [--baseline DIR]

For batched input (200 Kong events per message, as Kong's kafka-log sends) and for one event per
message: a ``keywatch worker`` process is started and warmed up, then the events are produced
(from a thread of this process) while ``/metrics`` is polled; the time runs from the first message
sent to ``keywatch_events_total`` (parsed) and ``keywatch_events_analyzed_total`` (profiles and
detectors done) reaching N; the rate to 90% analysed (the steady rate, without the run's
start-up and tail) is printed beside it.
The ceiling is a plain aiokafka consumer reading and JSON-decoding the same messages from the
same topic, right after the worker stopped; for one event per message, also a plain Faust agent
(benchmarks/plain_faust.py) on that topic. Batched input runs once per entry of ``--processes``
(``KEYWATCH_WORKER_PROCESSES``; 0 is the default, one per core), one event per message with the
default. Prints events/s and the ratios, and the load average around each case.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import ceiling, cpu_seconds, messages, produce, wait_for

from tests.support.kafka import create_topics
from tests.support.procs import keywatch_env, running
from worker.devstack import EmbeddedBroker

PARTITIONS = 8
PLAIN_MESSAGES = 20_000  # the plain agent's rate is steady; 200k messages would take ~45 s


def run_case(
    broker: EmbeddedBroker,
    tmp: Path,
    n: int,
    keys: int,
    per_message: int,
    processes: int,
    code: str = "",
    extra: dict[str, str] | None = None,
) -> dict:
    """One input shape through a fresh worker, then the ceiling on the same topic."""
    topic = f"bench-access-{per_message}-{secrets.token_hex(3)}"
    asyncio.run(create_topics(broker.bootstrap, [topic], PARTITIONS))
    values = messages(n, keys, per_message)
    warm = messages(1, 1, 1)
    env = keywatch_env(
        broker.url, f"sqlite:///{tmp / (topic + '.db')}", tmp,
        KEYWATCH_TOPIC_ACCESS=topic, KEYWATCH_PARTITIONS=str(PARTITIONS),
        KEYWATCH_LOG_LEVEL="INFO", KEYWATCH_SESSION_TIMEOUT_S="6",  # the default
        KEYWATCH_TOPIC_EVENTS_BY_KEY=f"{topic}-events", KEYWATCH_TOPIC_ALERTS=f"{topic}-alerts",
        KEYWATCH_WORKER_PROCESSES=str(processes), **(extra or {}),
    )  # fmt: skip
    if code:  # another checkout's code first on the path (a baseline in the same run)
        env["PYTHONPATH"] = code + os.pathsep + env["PYTHONPATH"]
    out: dict = {"per_message": per_message, "messages": len(values), "processes": processes,
                 "code": code, "load": os.getloadavg()[0]}  # fmt: skip
    with running(["worker"], env, tmp / f"{topic}.log") as proc:
        asyncio.run(produce(broker.bootstrap, topic, warm))
        wait_for(proc, "keywatch_events_analyzed_total", 1, 60)
        proc.wait_healthy()  # every process has its partitions (the supervisor's /health)
        time.sleep(2.0)  # let a rebalance that is still settling finish
        took: list[float] = []
        cpu0 = cpu_seconds(proc.proc.pid)
        broker0 = cpu_seconds(broker._proc.pid) if broker._proc else 0.0
        t0 = time.perf_counter()
        sender = threading.Thread(
            target=lambda: took.append(asyncio.run(produce(broker.bootstrap, topic, values)))
        )
        sender.start()
        t_parsed = wait_for(proc, "keywatch_events_total", n + 1, 600)
        t_most = wait_for(proc, "keywatch_events_analyzed_total", 0.9 * n, 600)
        t_done = wait_for(proc, "keywatch_events_analyzed_total", n + 1, 600)
        out["cpu_us"] = (cpu_seconds(proc.proc.pid) - cpu0) / n * 1e6
        # the broker's CPU meanwhile (the producer's and the worker's traffic): same cores
        out["broker_us"] = (
            ((cpu_seconds(broker._proc.pid) if broker._proc else 0.0) - broker0) / n * 1e6
        )
        sender.join()
        out["producer_s"] = took[0]
        out["parsed_eps"] = n / (t_parsed - t0)
        out["worker_eps"] = n / (t_done - t0)
        out["most_eps"] = 0.9 * n / (t_most - t0)
    cpu0 = time.process_time()
    out["ceiling_eps"] = n / asyncio.run(ceiling(broker.bootstrap, topic, n + 1))
    out["ceiling_cpu_us"] = (time.process_time() - cpu0) / n * 1e6
    if per_message == 1:
        out["plain_faust_eps"] = plain_faust(broker, topic, tmp, min(n, PLAIN_MESSAGES))
    return out


def plain_faust(broker: EmbeddedBroker, topic: str, tmp: Path, messages: int) -> float:
    """Messages/s of a plain Faust agent reading the same topic (benchmarks/plain_faust.py)."""
    script = Path(__file__).with_name("plain_faust.py")
    done = subprocess.run(
        [sys.executable, str(script), broker.url, topic, str(messages), str(tmp / "plain")],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    # Faust redirects stdout into its log lines: find the figure wherever it landed.
    found = re.findall(r"PLAIN_SECONDS=([0-9.]+)", done.stdout + done.stderr)
    if done.returncode != 0 or not found:
        raise SystemExit(f"plain Faust agent failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    return messages / float(found[-1])


def main() -> None:
    """Run both cases and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--keys", type=int, default=2000)
    ap.add_argument("--single-events", type=int, default=None, help="N for 1 event/message")
    ap.add_argument("--processes", default="1,0,4", help="worker processes per batched run "
                    "(0: the default, one per core)")  # fmt: skip
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEYWATCH_X=VALUE",
        help="a setting for every worker of the run (e.g. KEYWATCH_LOG_LEVEL=INFO)",
    )
    ap.add_argument("--baseline", default="", help="a checkout of earlier code (`git archive`"
                    "): its worker runs first, batched, one process")  # fmt: skip
    args = ap.parse_args()
    counts = [int(p) for p in args.processes.split(",")]
    extra = dict(item.partition("=")[::2] for item in args.set)
    with tempfile.TemporaryDirectory() as d, EmbeddedBroker(log_path=Path(d) / "b.log") as b:
        rows = []
        if args.baseline:
            base = str(Path(args.baseline).resolve())
            rows.append(run_case(b, Path(d), args.events, args.keys, 200, 1, base, extra))
        rows += [run_case(b, Path(d), args.events, args.keys, 200, p, extra=extra) for p in counts]
        rows.append(
            run_case(b, Path(d), args.single_events or args.events, args.keys, 1, 0, extra=extra)
        )
    cores = len(os.sched_getaffinity(0))
    print(f"{'input':<16}{'processes':>16}{'worker ev/s':>12}{'to 90%':>9}{'parsed ev/s':>12}"
          f"{'ceiling ev/s':>13}{'ratio':>7}{'producer s':>11}{'load':>6}"
          f"{'CPU us/ev':>10}{'ceiling':>8}")  # fmt: skip
    for r in rows:
        label = f"{r['per_message']} ev/message"
        procs = f"{r['processes']}" if r["processes"] else f"{cores} (dflt)"
        procs = "baseline" if r["code"] else procs
        print(
            f"{label:<16}{procs:>16}{r['worker_eps']:>12,.0f}{r['most_eps']:>9,.0f}"
            f"{r['parsed_eps']:>12,.0f}"
            f"{r['ceiling_eps']:>13,.0f}{r['worker_eps'] / r['ceiling_eps']:>7.2f}"
            f"{r['producer_s']:>11.1f}{r['load']:>6.1f}{r['cpu_us']:>10.1f}"
            f"{r['ceiling_cpu_us']:>8.1f}"
        )
    # The ceiling swings with the shared machine's load (110-300k in one run): also compare
    # with the run's median ceiling, and CPU with CPU, which the load does not change.
    mid = statistics.median(r["ceiling_eps"] for r in rows[:-1])
    for r in rows[:-1]:
        who = "baseline" if r["code"] else f"{r['processes'] or cores} process(es)"
        print(f"batched, {who}: {r['worker_eps'] / mid:.2f}x the run's median ceiling "
              f"(to 90% analysed: {r['most_eps'] / mid:.2f}x) "
              f"({mid:,.0f} ev/s); CPU per event {r['cpu_us'] / r['ceiling_cpu_us']:.1f}x "
              f"the ceiling's; the broker meanwhile {r['broker_us']:.1f} us per event")  # fmt: skip
    single, plain = rows[-1]["worker_eps"], rows[-1]["plain_faust_eps"]
    print(
        f"one event/message: worker {single:,.0f} ev/s vs a plain Faust agent {plain:,.0f} "
        f"msg/s (same topic, same run): {single / plain:.1f}x"
    )


if __name__ == "__main__":
    main()
