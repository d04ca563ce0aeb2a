"""The server collects reference cycles on its own thread instead of after every script run."""

from __future__ import annotations

import threading
import time
import tomllib
from pathlib import Path

from cleaner.ui.cache import GarbageCollector

ROOT = Path(__file__).resolve().parents[1]


class _Calls:
    """A stand-in for gc.collect that records when it was called."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.called = threading.Event()

    def __call__(self) -> int:
        self.times.append(time.monotonic())
        self.called.set()
        return 0


def test_a_page_run_gets_a_collection_soon_after_it_asks():
    calls = _Calls()
    collector = GarbageCollector(every_s=3600, gap_s=0.05, collect=calls)
    try:
        time.sleep(0.3)
        assert calls.times == []  # nobody asked, and the periodic collection is an hour away
        asked = time.monotonic()
        collector.soon()
        assert calls.called.wait(10)
        assert calls.times[0] - asked >= 0.05  # after the gap, when the run has had time to leave its garbage
    finally:
        collector.stop()


def test_an_idle_server_collects_every_period_without_the_gap():
    calls = _Calls()
    collector = GarbageCollector(every_s=0.1, gap_s=60, collect=calls)
    try:
        deadline = time.monotonic() + 10
        while len(calls.times) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(calls.times) >= 3  # a 60 s gap would allow none in this time
    finally:
        collector.stop()


def test_a_stopped_collector_collects_no_more():
    calls = _Calls()
    collector = GarbageCollector(every_s=0.05, gap_s=0.01, collect=calls)
    assert calls.called.wait(10)
    collector.stop()
    time.sleep(0.1)
    count = len(calls.times)
    time.sleep(0.3)
    assert len(calls.times) == count


def test_the_shipped_server_config_leaves_collection_to_that_thread():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False


def test_the_shipped_server_config_turns_off_fast_reruns():
    """Fast reruns replace a queued click's rerun request with a whole-page one that follows it: the click's
    callback never runs (tests/e2e/test_clicks_e2e.py makes that order of messages happen)."""
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["fastReruns"] is False
