"""Where the test suite's wall time goes: each test's start and end in each pytest-xdist process, then per process its
files in the order they ran, with their spans.

    SUITE_TIMELINE=OUT PYTHONPATH=bench bash scripts/test.sh -p suite_timeline     # record (a pytest plugin)
    python bench/suite_timeline.py OUT [--longer-than 3]                           # report

Recording writes ``OUT/<process>.jsonl`` (``gw0``, ``gw1``, …; ``main`` for the controlling process, which sees every
test's report and is left out of the report). The report prints, per process, each file's start and end (seconds
from the process's first test) and every test that took longer than ``--longer-than`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import IO, Optional

_log: Optional[IO[str]] = None


def _record(kind: str, nodeid: str) -> None:
    global _log
    if _log is None:
        folder = Path(os.environ.get("SUITE_TIMELINE", "suite_timeline"))
        folder.mkdir(parents=True, exist_ok=True)
        _log = open(folder / f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.jsonl", "a")
    _log.write(json.dumps([kind, nodeid, time.time()]) + "\n")
    _log.flush()


def pytest_runtest_logstart(nodeid, location) -> None:
    _record("start", nodeid)


def pytest_runtest_logfinish(nodeid, location) -> None:
    _record("end", nodeid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--longer-than", type=float, default=3.0, help="seconds: list the tests that took longer")
    args = parser.parse_args()
    for log in sorted(path for path in args.folder.glob("*.jsonl") if path.stem != "main"):
        events = [json.loads(line) for line in log.read_text().splitlines()]
        first = events[0][2]
        started, files, slow = {}, {}, []
        for kind, nodeid, at in events:
            if kind == "start":
                started[nodeid] = at
                continue
            span = files.setdefault(nodeid.split("::")[0], [started[nodeid], at])
            span[1] = at
            if at - started[nodeid] > args.longer_than:
                slow.append((started[nodeid] - first, at - started[nodeid], nodeid))
        print(f"{log.stem}: busy until {events[-1][2] - first:.0f} s")
        for name, (start, end) in files.items():
            print(f"  {start - first:7.1f} → {end - first:7.1f} s  {name}")
        for start, seconds, nodeid in slow:
            print(f"    {start:7.1f} s + {seconds:6.1f} s  {nodeid}")


if __name__ == "__main__":
    main()
