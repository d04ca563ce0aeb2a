"""The server collects reference cycles on its own thread instead of after every script run."""
from __future__ import annotations

import gc
import time
import tomllib
import weakref
from pathlib import Path

from cleaner.ui.cache import collect_garbage_every

ROOT = Path(__file__).resolve().parents[1]


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_cycles_left_by_an_ended_session_are_collected_without_a_script_run():
    was_enabled = gc.isenabled()
    gc.disable()  # only the collector under test may free the cycle
    stop = collect_garbage_every(0.05)
    try:
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        alive = weakref.ref(a)
        del a, b
        deadline = time.monotonic() + 10
        while alive() is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert alive() is None
    finally:
        stop.set()
        if was_enabled:
            gc.enable()


def test_the_shipped_server_config_leaves_collection_to_that_thread():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False
