#!/usr/bin/env python
"""Where a running server's memory goes on one large dataset: one browser session, from opening to the first decision.

    python bench/server_memory.py --n 1000000 --json OUT.json      # the issue's question (a cold cache: ~10 min)
    nice -n 19 python bench/server_memory.py --n 20000 --json OUT.json   # a quick try of the script itself

One `streamlit run streamlit_app.py` (bench/load.py's `Server`: its own process group, cache folder and allowed
folder) and one headless Chromium page (Playwright, Debian's /usr/bin/chromium, the e2e tests' browser arguments).
The page opens bench/scale.py's generated N-row NPZ (written uncompressed, as the README advises for large data) from
the server folder with an empty graph and layout cache (numba's compiled kernels kept between runs in --workdir),
waits until the final 3D map draws all N points, opens the review queue and excludes the first card.

Every 0.5 s the server's resident memory is sampled with psutil, its child processes included (the niced numba
warm-up is one), from the moment the page is opened to the first decision. The JSON has the samples, the peak in each
phase (opening, neighbours and map, review queue, decision), and what the big arrays the server holds cost, from what
is public: the cache files the server wrote (graph, 3D and 2D layouts), the dataset's arrays as the NPZ's headers
declare them, and the map payload rebuilt here from the cached 3D layout with the app's own `build_payload`. See
bench/README.md for the keys.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from load import Server  # noqa: E402 - bench/load.py: how the benchmarks start a server
from scale import write_dataset  # noqa: E402 - bench/scale.py: the one data generator of the benchmarks

from tests.e2e.helpers import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, choose_data_source, settle, wait_map  # noqa: E402

SAMPLE_EVERY_S = 0.5
MB = 1024 * 1024


class RssSampler:
    """The resident memory of a process and all its children, every SAMPLE_EVERY_S, with the phase it fell in."""

    def __init__(self, pid: int):
        import psutil

        self._proc = psutil.Process(pid)
        self.samples: list[dict] = []
        self.phase = "idle"
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _rss(self) -> tuple[float, float, int]:
        import psutil

        main = self._proc.memory_info().rss
        children = 0
        kids = self._proc.children(recursive=True)
        for child in kids:
            try:
                children += child.memory_info().rss
            except psutil.Error:  # ended between the listing and the reading
                pass
        return main / MB, children / MB, len(kids)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                main, children, kids = self._rss()
            except Exception:  # noqa: BLE001 - the server ended; the run reports it
                return
            self.samples.append(
                {
                    "t_s": round(time.monotonic() - self._t0, 2),
                    "phase": self.phase,
                    "rss_mb": round(main + children, 1),
                    "server_mb": round(main, 1),
                    "children_mb": round(children, 1),
                    "children": kids,
                }
            )
            self._stop.wait(SAMPLE_EVERY_S)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def peaks(self, what: str = "rss_mb") -> dict:
        """The highest RSS in each phase (and overall, from opening on), in MB: with the children ("rss_mb") or of the
        server process alone ("server_mb")."""
        out: dict[str, float] = {}
        for s in self.samples:
            out[s["phase"]] = max(out.get(s["phase"], 0.0), s[what])
        out["overall"] = max((s[what] for s in self.samples if s["phase"] != "idle"), default=0.0)
        return out


def npz_arrays(npz: Path) -> dict[str, dict]:
    """Each array of the NPZ: shape, dtype and bytes as the header declares them (what load_npz holds in memory)."""
    out = {}
    with np.load(npz, allow_pickle=False, mmap_mode="r") as z:  # our own generated file; headers only
        for name in z.files:
            a = z[name]
            out[name] = {"shape": list(a.shape), "dtype": str(a.dtype), "mb": round(a.nbytes / MB, 1)}
    return out


def cache_files(cache: Path) -> dict[str, dict]:
    """The graph and layout files the server wrote, with the bytes of the arrays they hold."""
    out = {}
    for path in sorted((cache / "graphs").glob("*.npz")) + sorted((cache / "layouts").glob("*.npy")):
        entry = {"file_mb": round(path.stat().st_size / MB, 1)}
        if path.suffix == ".npy":
            entry["array_mb"] = round(np.load(path, mmap_mode="r", allow_pickle=False).nbytes / MB, 1)
        else:
            with np.load(path, allow_pickle=False) as z:
                entry["array_mb"] = round(sum(z[k].nbytes for k in z.files) / MB, 1)
        out[f"{path.parent.name}/{path.name}"] = entry
    return out


def payload_sizes(cache: Path, npz: Path) -> dict:
    """The 3D map payload the page builds (and keeps in its payload cache), rebuilt here from the cached layout."""
    from cleaner.io.dataset import load_npz
    from cleaner.ui.map.palette import class_colours
    from cleaner.ui.map.payload import build_payload

    three = [p for p in (cache / "layouts").glob("*.npy") if np.load(p, mmap_mode="r").shape[1:] == (3,)]
    if not three:
        return {}
    coords = np.load(three[0], allow_pickle=False)
    data = load_npz(npz, max_bytes=1 << 40, max_rows=len(coords), max_dims=4096)
    payload = build_payload(coords, data.label_codes, data.class_names, colours=class_colours(len(data.class_names)))
    held = {
        "levels": payload.levels.nbytes,
        "class_codes": payload.class_codes.nbytes,
        "drawn_coords_after_an_event": payload.drawn_coords().nbytes,
        "points_message": len(payload.points_message()),
        "colours_message": len(payload.colours_message()),
    }
    return {
        **{f"{k}_mb": round(v / MB, 1) for k, v in held.items()},
        "total_mb": round(sum(held.values()) / MB, 1),
        "note": "per (layout, dims, colouring, relabels) in the page's payload cache (max 16 entries); coords are a "
        "reference to the layout, not a copy; sessions share one payload (with_marks shares its arrays)",
    }


COMPUTING = """() => Array.from(document.querySelectorAll('[data-testid=stCaptionContainer]')).some(
    e => ['PCA preview', 'partial UMAP map', 'nearest neighbours of'].some(t => e.innerText.includes(t)))"""


def wait_final_map(page, n: int, cache: Path, timeout_s: float) -> None:
    """Until the server has stored the 3D map and the page draws it: a caption that says something is computed can be
    missing for a moment while its fragment reruns, so the page must also stay without one for a few seconds."""
    deadline = time.monotonic() + timeout_s
    while not any(
        np.load(p, mmap_mode="r", allow_pickle=False).shape == (n, 3) for p in (cache / "layouts").glob("*.npy")
    ):
        if time.monotonic() > deadline:
            raise TimeoutError("the server stored no 3D map")
        time.sleep(1.0)
    while True:
        wait_map(page, n, 3, timeout=max(1.0, deadline - time.monotonic()) * 1000)
        time.sleep(3.0)  # longer than the waiting caption's fragment takes to rerun
        if not page.evaluate(COMPUTING):
            return
        if time.monotonic() > deadline:
            raise TimeoutError("the page still says the map is being computed")


def drive(url: str, n: int, timeout_s: float, sampler: RssSampler, shots: Path, cache: Path) -> dict:
    """One user: open the NPZ from the server folder, wait for the final 3D map, exclude the first queue card."""
    from playwright.sync_api import sync_playwright

    marks: dict[str, float] = {}
    t0 = time.monotonic()
    timeout_ms = timeout_s * 1000
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_context(viewport=VIEWPORT).new_page()
        page.set_default_timeout(timeout_ms)
        sampler.phase = "open"
        page.goto(url)
        page.get_by_test_id("stSidebar").locator("[data-testid=stRadio] label").first.wait_for()
        choose_data_source(page, "Server folder")
        page.get_by_text(f"· {n:,} images ·").first.wait_for()
        marks["dataset_shown_s"] = time.monotonic() - t0
        sampler.phase = "map"
        wait_final_map(page, n, cache, timeout_s)
        marks["final_map_s"] = time.monotonic() - t0
        page.screenshot(path=str(shots / f"server_memory_{n}_map.png"))
        sampler.phase = "queue"
        page.locator("[data-testid=stRadio] label").filter(has_text=re.compile(r"^Review queue$")).click()
        page.get_by_text("flagged samples left to review").first.wait_for()
        settle(page, timeout_ms)
        marks["queue_shown_s"] = time.monotonic() - t0
        sampler.phase = "decision"
        main = page.get_by_test_id("stMain")
        main.get_by_role("button", name=re.compile(r"^Exclude\b(?! all)")).first.click()
        page.get_by_text("· 1 decided ·").first.wait_for()
        settle(page, timeout_ms)
        marks["first_decision_s"] = time.monotonic() - t0
        page.screenshot(path=str(shots / f"server_memory_{n}_decision.png"))
        browser.close()
    return {k: round(v, 1) for k, v in marks.items()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--dims", type=int, default=512)
    ap.add_argument("--clusters", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="kept between runs: the NPZ and numba's kernels")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds for the map (and each other wait)")
    ap.add_argument("--server-env", nargs="*", default=[], metavar="NAME=VALUE", help="e.g. MALLOC_ARENA_MAX=2")
    ap.add_argument("--json", type=Path, default=None)
    opts = ap.parse_args(argv)

    work = opts.workdir or Path(f"/tmp/cleaner-server-memory-{opts.n}")
    allowed, cache = work / "allowed", work / "cache"
    allowed.mkdir(parents=True, exist_ok=True)
    npz = allowed / f"synthetic_{opts.n}.npz"
    if not npz.exists():
        print(f"writing {opts.n:,} x {opts.dims} embeddings to {npz}", flush=True)
        write_dataset(allowed, opts.n, opts.dims, opts.clusters, opts.seed, uncompressed=True)
    for folder in ("graphs", "layouts"):  # a cold cache: the server computes what a first user waits for
        shutil.rmtree(cache / folder, ignore_errors=True)
    env = dict(item.split("=", 1) for item in opts.server_env)
    server = Server(cache, allowed, work / "server.log", session_ttl_s=120, timeout=300, extra_env=env)
    sampler = RssSampler(server.proc.pid)
    out: dict = {"n": opts.n, "dims": opts.dims, "sample_every_s": SAMPLE_EVERY_S, "server_env": env}
    try:
        time.sleep(2 * SAMPLE_EVERY_S)  # the idle server, before any page
        out["idle_rss_mb"] = sampler.samples[-1]["rss_mb"] if sampler.samples else None
        out["marks_s"] = drive(server.url, opts.n, opts.timeout, sampler, work, cache)
    finally:
        sampler.stop()
        errors, _ = server.log_errors()
        server.stop()
    out["peak_rss_mb"] = sampler.peaks()
    out["peak_server_rss_mb"] = sampler.peaks("server_mb")
    out["server_log_errors"] = errors[:5]
    out["held"] = {
        "dataset": npz_arrays(npz),
        "cache_files": cache_files(cache),
        "map_payload_3d": payload_sizes(cache, npz),
    }
    out["samples"] = sampler.samples
    out["screenshots"] = sorted(str(p) for p in work.glob("server_memory_*.png"))
    text = json.dumps(out, indent=1)
    if opts.json:
        opts.json.write_text(text)
    summary = {k: v for k, v in out.items() if k != "samples"}
    print(json.dumps(summary, indent=1))
    return out


if __name__ == "__main__":
    main()
