"""The server collects reference cycles on its own thread instead of after every script run."""
from __future__ import annotations

import gc
import time
import tomllib
import weakref
from pathlib import Path

import pytest

from cleaner.ui.cache import GarbageCollector

ROOT = Path(__file__).resolve().parents[1]


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def _freed_within(alive: weakref.ref, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive() is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    return alive() is None


@pytest.fixture
def no_automatic_gc():
    was_enabled = gc.isenabled()
    gc.disable()  # only the collector under test may free the cycles
    yield
    if was_enabled:
        gc.enable()


def test_a_page_run_gets_its_cycles_collected_soon_after(no_automatic_gc):
    collector = GarbageCollector(every_s=3600, gap_s=0.05)
    try:
        alive = _cycle()
        time.sleep(0.3)
        assert alive() is not None  # nobody asked, and the periodic collection is an hour away
        collector.soon()
        assert _freed_within(alive, 10)
    finally:
        collector.stop()


def test_an_idle_server_still_collects_periodically(no_automatic_gc):
    collector = GarbageCollector(every_s=0.1, gap_s=0.01)
    try:
        assert _freed_within(_cycle(), 10)
    finally:
        collector.stop()


def test_the_shipped_server_config_leaves_collection_to_that_thread():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False
