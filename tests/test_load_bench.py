"""The load bench's statistics: the team-to-per-session p95 ratio and its bootstrap interval over sessions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[1] / "bench" / "load.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("load_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _sessions(rng: np.random.Generator, scale: float, n: int = 10, per: int = 10) -> list[list[float]]:
    return [list(rng.lognormal(np.log(2.0 * scale), 0.5, per)) for _ in range(n)]


def test_same_latencies_give_a_ratio_near_one_whose_interval_holds_one():
    load = _load_bench()
    rng = np.random.default_rng(3)
    found = load.p95_ratio_interval(_sessions(rng, 1.0), _sessions(rng, 1.0), seed=1, reps=500)
    low, high = found["interval"]
    assert low <= 1 <= high
    assert low <= found["ratio"] <= high
    assert not found["team_worse_beyond_noise"]
    assert "bootstrap over sessions" in found["method"]


def test_a_team_twice_as_slow_is_worse_beyond_noise():
    load = _load_bench()
    rng = np.random.default_rng(4)
    solo, team = _sessions(rng, 1.0), _sessions(rng, 2.0)
    found = load.p95_ratio_interval(solo, team, seed=1, reps=500)
    pooled = np.percentile(np.concatenate(team), 95) / np.percentile(np.concatenate(solo), 95)
    assert found["ratio"] == round(float(pooled), 3)
    assert found["interval"][0] > 1
    assert found["team_worse_beyond_noise"]


def test_no_latencies_in_a_phase_give_no_ratio():
    load = _load_bench()
    assert load.p95_ratio_interval([[], []], [[1.0, 2.0]], seed=1) is None
