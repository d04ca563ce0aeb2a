#!/usr/bin/env python
"""What a team does to one server: N real browser sessions at once, each running a user's whole workflow.

    python bench/load.py --sessions 10 --json OUT.json                 # 100k rows, warm then cold cache
    python bench/load.py --n 5000 --sessions 2 --ticks 4 --decisions 2 # a quick try of the script itself
    python bench/load.py --team --sessions 10 --think 1 3 --no-webgl   # the decision store: per session vs team

One `streamlit run streamlit_app.py` server on 127.0.0.1 with its own cache folder and an allowed folder holding
a generated dataset (bench/scale.py's generator; a few hundred small PNGs behind symlinks, one per row). Headless
Chromium contexts (Debian's /usr/bin/chromium, driven by Playwright) each: open the dataset from the server
folder, select a class, tick Exclude on `--ticks` tiles across gallery pages, decide `--decisions` review-queue
cards (Exclude and Keep in turn), download the exclusion list, and check that the list holds exactly its own
exclusions. Latencies are from the click to the page showing its effect (the count the server renders after
the change), so they include the server's rerun, the websocket and the browser's redraw.

Phases: a warm cache (graph and layouts computed beforehand): one session alone (its RSS is "one user"), then
a wave of N, then, after the sessions closed and Streamlit's disconnected-session TTL passed, a second wave of
N (memory must come back down, not grow per wave). Then a new server with an empty graph and layout cache
(numba's compiled kernels kept, as after a restart): N sessions arrive a second apart, the first one starts
the computations; every write into the layout store is counted. Every wait is bounded, and so is the run.
See bench/README.md for the keys of the JSON.

--team replaces the waves with two phases on the warm cache, one server each: N sessions keeping their decisions on
the server under their own tokens, then N teammates signed in through a real OpenID Connect provider on loopback;
each decides --decisions review-queue cards at the --think pace. Decision latency, the server's CPU time per
decision, decisions lost (acknowledged by the page, absent from the database) and the database's size per 10,000.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "streamlit_app.py"
sys.path.insert(0, str(ROOT))
from tests.e2e.helpers import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, streamlit_command  # noqa: E402 - the browser tests' settings

PAGE_SIZE = 24  # the gallery's tiles per page (cleaner.ui.gallery.PAGE_SIZE)
SOURCE_TILES = 300  # distinct PNGs; every row's path is a symlink to one of them
ACTIONS = ("open", "select", "page", "tick", "queue", "decision", "download")
ERROR_LINE = re.compile(r"Traceback \(most recent call last\)|Uncaught app exc\w*|\bERROR\b|Exception in \w+")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class Data:
    npz: Path
    root: Path
    paths: np.ndarray  # what the NPZ holds, row by row
    class_sizes: dict[str, int]


def write_data(root: Path, n: int, dims: int, clusters: int, seed: int) -> Data:
    """bench/scale.py's embeddings with text labels, and one symlinked PNG per row (reused by many rows)."""
    from PIL import Image

    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    from scale import make_data  # noqa: E402 - bench/scale.py: the one data generator of the benchmarks

    from cleaner.io.dataset import npz_bytes

    npz = root / f"load_{n}.npz"
    images = root / "images"
    tiles = images / "_tiles"
    tiles.mkdir(parents=True, exist_ok=True)
    paths = np.array([str(images / f"img_{i:06d}.png") for i in range(n)])
    if not npz.exists():
        log(f"writing {n:,} x {dims} embeddings and {n:,} image links under {root}")
        emb, codes = make_data(n, dims, clusters, seed)
        labels = np.array([f"class_{c:02d}" for c in codes])
        rng = np.random.default_rng(seed)
        for t in range(SOURCE_TILES):
            pixels = rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
            Image.fromarray(pixels, mode="RGB").save(tiles / f"tile_{t:03d}.png")
        for i, path in enumerate(paths):
            link = Path(path)
            if not link.is_symlink():
                link.symlink_to(tiles / f"tile_{i % SOURCE_TILES:03d}.png")
        tmp = npz.with_suffix(".tmp")
        tmp.write_bytes(npz_bytes(emb, labels, paths))
        tmp.replace(npz)
    with np.load(npz, allow_pickle=False) as z:
        labels = z["labels"].astype(str)
        stored = z["image_paths"].astype(str)
    names, counts = np.unique(labels, return_counts=True)
    return Data(npz=npz, root=root, paths=stored, class_sizes=dict(zip(names.tolist(), counts.tolist())))


PRECOMPUTE = r"""
import sys
from dataclasses import replace
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from cleaner.io.dataset import load_npz
from cleaner.layout.layouts import LayoutParams, LayoutStore
from cleaner.layout.service import LayoutService
from cleaner.graph.distance import resolved_metric
from cleaner.graph.neighbours import GraphStore, neighbour_graph
from cleaner.graph.neighbours import GRAPH_K
cache = Path(sys.argv[3])
dataset = load_npz(sys.argv[2])
params = LayoutParams(metric=resolved_metric("auto", dataset.embeddings))  # the page's defaults (map_settings)
graph = neighbour_graph(dataset.embeddings, k=GRAPH_K, metric=params.metric, store=GraphStore(cache / "graphs"),
                        embedding_digest=dataset.embedding_digest)
service = LayoutService(LayoutStore(cache / "layouts"))
for n in (3, 2):
    p = replace(params, n_components=n)
    service.request(dataset.embedding_digest, p, dataset.embeddings, graph)
    service.wait(dataset.embedding_digest, p)
"""


def data_digest(data: Data) -> str:
    """The dataset's digest, as the page computes it (autosaved lists are named after it)."""
    sys.path.insert(0, str(ROOT))
    from cleaner.io.dataset import load_npz

    return load_npz(data.npz).digest


def precompute(data: Data, cache: Path, timeout: float) -> None:
    """The graph and both layouts of the page's default settings, in the server's cache folder."""
    if (cache / "layouts").is_dir() and len(list((cache / "layouts").glob("*.npy"))) >= 2:
        return
    log("computing the graph and both layouts into the warm cache (once per work folder)")
    subprocess.run(
        [sys.executable, "-c", PRECOMPUTE, str(ROOT), str(data.npz), str(cache)], check=True, timeout=timeout
    )


# ------------------------------------------------------------------------------------------------ server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) the process used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_busy_cpu_s() -> float:
    """CPU seconds every process on the machine used so far (all cores, idle and I/O wait left out)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / _TICKS


class CpuShare:
    """Where the machine's CPU went between start and stop: the server, and everything else (the browsers)."""

    def __init__(self, server_pid: int):
        self.pid = server_pid
        self.server0, self.machine0, self.wall0 = process_cpu_s(server_pid), machine_busy_cpu_s(), time.monotonic()

    def stop(self) -> dict:
        server, machine = process_cpu_s(self.pid) - self.server0, machine_busy_cpu_s() - self.machine0
        return {
            "wall_s": round(time.monotonic() - self.wall0, 1),
            "server_cpu_s": round(server, 1),
            "machine_busy_cpu_s": round(machine, 1),
            "server_share_of_busy_cpu": round(server / machine, 3) if machine > 0 else None,
        }


class Server:
    """`streamlit run streamlit_app.py` in its own process group, its RSS sampled in the background."""

    def __init__(
        self,
        cache: Path,
        allowed: Path,
        log_path: Path,
        session_ttl_s: int,
        timeout: float = 180,
        extra_env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        port: int | None = None,
    ):
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cache = cache
        self.log_path = log_path
        env = {
            **os.environ,
            "CLEANER_CACHE_DIR": str(cache),
            "CLEANER_ALLOWED_ROOTS": str(allowed),
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            streamlit_command(
                APP, self.port, "--server.disconnectedSessionTTL", str(session_ttl_s), *(extra_args or [])
            ),
            cwd=str(ROOT),
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.samples: list[tuple[float, float]] = []  # (time, RSS MB)
        self._stop = threading.Event()
        started = time.monotonic()
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() - started > timeout:
                self.stop()
                raise RuntimeError(f"server did not start; log tail:\n{log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as resp:
                return resp.read().strip() == b"ok"
        except OSError:
            return False

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), rss_mb(self.proc.pid)))
            self._stop.wait(0.2)

    def rss(self) -> float:
        return rss_mb(self.proc.pid)

    def peak_since(self, t: float) -> float:
        return max((mb for at, mb in self.samples if at >= t), default=self.rss())

    def log_errors(self) -> tuple[list[str], int]:
        """Error lines of the server log, and how many tracebacks were Streamlit's own noise about a websocket
        that a closed tab took away (raised inside Streamlit's server, reported apart from the app's errors)."""
        self._log.flush()
        text = self.log_path.read_text(errors="replace")
        blocks = re.split(r"\n(?=\S)(?!Traceback|During handling|  )", text)
        errors, disconnects = [], 0
        for block in blocks:
            if not ERROR_LINE.search(block):
                continue
            if "WebSocketDisconnected" in block or "WebSocket is not connected" in block:
                disconnects += 1
            else:
                errors.append(block.strip()[:400])
        return errors, disconnects

    def stop(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the group this script created, nothing else
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)
            except ProcessLookupError:
                pass
        self._log.close()


class StoreWrites:
    """Counts files written into a cache store: os.replace gives each write a new inode, a read's utime does not."""

    def __init__(self, folder: Path, pattern: str):
        self.folder, self.pattern = folder, pattern
        self.seen: set[tuple[str, int]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(0.1)

    def poll(self) -> None:
        try:
            for path in self.folder.glob(self.pattern):
                try:
                    self.seen.add((path.name, path.stat().st_ino))
                except OSError:
                    pass
        except OSError:
            pass

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        self.poll()
        return {"writes": len(self.seen), "distinct": len({name for name, _ in self.seen})}


# ------------------------------------------------------------------------------------------------ one session


@dataclass
class Session:
    sid: int
    klass: str
    times: dict[str, list[float]] = field(default_factory=lambda: {a: [] for a in ACTIONS})
    expected: set[str] = field(default_factory=set)  # the paths this session excluded
    downloaded: set[str] | None = None
    errors: list[str] = field(default_factory=list)
    done: bool = False
    step: str = "start"  # where a failure happened
    token: str = ""  # with --autosave: the token the page gave this session


# The waits poll every 25-50 ms in every session, so they read textContent: innerText lays the page out first,
# and ten sessions polling it would spend the cores the server and the pages need on the bench itself (the
# README gives the measured cost). Every needle is text the server rendered into the page after the change,
# so the hidden text textContent also reads cannot match early.
TEXT_SHOWN = "([needles]) => { const t = document.body.textContent; return needles.some(n => t.includes(n)); }"
# Idle for quiet_ms on end: a tick on small data, or a map that became ready, starts a second run right after the
# first one, and a click that lands between the two can be dropped by the page.
SCRIPT_IDLE = """(quietMs) => {
    const a = document.querySelector('[data-testid=stApp]');
    const now = performance.now();
    if (!a || a.getAttribute('data-test-script-state') === 'running') { window.__benchBusyAt = now; return false; }
    return now - window.__benchBusyAt >= quietMs;
}"""
QUIET_MS = 300


async def settle(page) -> None:
    """Wait until the script has stopped running and stayed stopped for QUIET_MS (not part of any latency)."""
    await page.evaluate("() => { window.__benchBusyAt = performance.now(); }")
    await page.wait_for_function(SCRIPT_IDLE, arg=QUIET_MS, polling=50)


TILE_FILES = """() => {
    const out = []; let last = null;
    for (const el of document.querySelectorAll('[data-testid=stText], [data-testid=stCheckbox]')) {
        if (el.getAttribute('data-testid') === 'stText') { if (el.textContent.startsWith('label: ')) last = el.textContent; continue; }
        const input = el.querySelector('input[type=checkbox]');
        if (!input || input.getAttribute('aria-label') !== 'Exclude' || last === null) continue;
        out.push([(last.split('\\n')[1] || '').trim(), input.checked]); last = null;
    }
    return out;
}"""
CARD_FILE = """(button) => {
    for (let el = button; el; el = el.parentElement) {
        const m = el.innerText && el.innerText.match(/img_\\d+\\.png/);
        if (m) return m[0];
    }
    return null;
}"""


async def class_kept(page, box, chosen: str, when: str, wait_ms: float = 5_000) -> None:
    """The Class box shows the class this session chose; if not within wait_ms, an error naming what it shows
    instead and whether a script run was under way (the page must never change a user's choice)."""
    from playwright.async_api import expect

    try:
        await expect(box).to_have_value(chosen, timeout=wait_ms)
    except AssertionError:
        shown = await box.input_value()
        state = await page.evaluate(
            "() => document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state')"
        )
        raise AssertionError(
            f"the Class box shows {shown!r}, not the chosen {chosen!r}, {when} (script state: {state})"
        ) from None


async def keep_on_server(page) -> str:
    """Turn on "Keep my decisions on this server"; returns the token the page shows."""
    sidebar = page.get_by_test_id("stSidebar")
    await sidebar.get_by_text("Keep my decisions on this server", exact=True).click()
    code = sidebar.locator("[data-testid=stCode] code")
    await code.wait_for()
    token = (await code.inner_text()).strip()
    await settle(page)
    return token


def _count_needles(k: int) -> list[str]:
    """Texts the page shows once the server has counted k exclusions: the gallery's note or the header."""
    return [f"{k:,} image{'' if k == 1 else 's'} excluded in all", f"· {k:,} excluded ·"]


async def _timed(session: Session, action: str, act, effect) -> None:
    session.step = f"{action} {len(session.times[action]) + 1}"
    t0 = time.perf_counter()
    await act()
    await effect()
    session.times[action].append(time.perf_counter() - t0)


async def run_session(
    ctx,
    url: str,
    session: Session,
    data: Data,
    ticks: int,
    decisions: int,
    timeout_ms: float,
    shots: Path | None = None,
    autosave: bool = False,
    think_s: tuple[float, float] = (0.0, 0.0),
) -> None:
    """One user's workflow; any failure is recorded and ends this session only.

    `think_s`: before each tick and each review decision the session pauses for a time drawn uniformly from
    this range (seeded by the session's number), as a person looks at an image before deciding; (0, 0) clicks
    as soon as the page is idle, a stress test rather than a team's pace. The pause is not part of any latency.
    """
    pace = random.Random(session.sid)

    async def think() -> None:
        if think_s[1] > 0:
            await asyncio.sleep(pace.uniform(*think_s))

    page = await ctx.new_page()
    page.set_default_timeout(timeout_ms)
    by_file = {os.path.basename(p): p for p in data.paths.tolist()}
    try:
        await page.goto(url)
        sidebar = page.get_by_test_id("stSidebar")
        server_folder = sidebar.locator("[data-testid=stRadio] label").filter(has_text=re.compile(r"^Server folder$"))
        await server_folder.wait_for()
        shown = f"· {len(data.paths):,} images ·"
        await _timed(
            session,
            "open",
            server_folder.click,
            lambda: page.wait_for_function(TEXT_SHOWN, arg=[[shown]], polling=100, timeout=timeout_ms),
        )
        await settle(page)
        combo = page.get_by_role("combobox", name="NPZ on the server", exact=True)
        value = await combo.input_value()
        if value != str(data.npz):
            raise AssertionError(f"the server folder offers {value!r}, not {data.npz}")
        if autosave:
            session.step = "autosave on"
            session.token = await keep_on_server(page)

        # Select the session's own class (typed into the box, as a keyboard user does).
        session.step = "choose class"
        klass = page.get_by_role("combobox", name="Class", exact=True)
        await klass.click()
        await klass.fill(session.klass)
        await page.get_by_role("option", name=session.klass, exact=True).wait_for()
        await page.keyboard.press("Enter")  # clicking in the popover is fragile: it closes when the page scrolls
        await class_kept(page, klass, session.klass, "after choosing it")
        size = data.class_sizes[session.klass]
        heading = f"Selected: {size:,} image{'' if size == 1 else 's'}"
        await _timed(
            session,
            "select",
            page.get_by_role("button", name="Select class", exact=True).click,
            lambda: page.wait_for_function(TEXT_SHOWN, arg=[[heading]], polling=50, timeout=timeout_ms),
        )
        await settle(page)
        await class_kept(page, klass, session.klass, "after selecting it")

        # Ticks, spread over the first pages of the selection.
        per_page = max(1, min(PAGE_SIZE // 3, -(-ticks // 3)))
        done = 0
        page_number = 1
        while done < ticks:
            tiles = await page.evaluate(TILE_FILES)
            for index in range(0, len(tiles), 3)[:per_page]:
                if done >= ticks:
                    break
                name, checked = tiles[index]
                if checked:
                    raise AssertionError(f"{name} is ticked before this session ticked it")
                box = (
                    page.locator("[data-testid=stCheckbox]")
                    .filter(has=page.get_by_role("checkbox", name="Exclude", exact=True))
                    .nth(index)
                    .locator("label")
                )
                await box.scroll_into_view_if_needed()
                session.expected.add(by_file[name])
                done += 1
                await think()
                await _timed(
                    session,
                    "tick",
                    box.click,
                    lambda k=done: page.wait_for_function(
                        TEXT_SHOWN, arg=[_count_needles(k)], polling=25, timeout=timeout_ms
                    ),
                )
                await settle(page)
            if done < ticks:
                page_number += 1
                first = tiles[0][0]
                number = page.get_by_role("spinbutton", name=re.compile(r"^Page \(of \d+\)"))

                async def turn(number=number, page_number=page_number) -> None:
                    await number.fill(str(page_number))
                    await number.press("Enter")

                await number.scroll_into_view_if_needed()
                await _timed(
                    session,
                    "page",
                    turn,
                    lambda first=first: page.wait_for_function(
                        "(first) => { const t = Array.from(document.querySelectorAll('[data-testid=stText]'))"
                        ".find(e => e.textContent.startsWith('label: ')); return t && !t.textContent.endsWith(first); }",
                        arg=first,
                        polling=25,
                        timeout=timeout_ms,
                    ),
                )
                await settle(page)
                # The latency ends when the first tile changes; the ticks wait until no tile of the last page is
                # left on screen, so a tile still being replaced is never taken for one of the new page.
                await page.wait_for_function(
                    f"(old) => {{ const now = ({TILE_FILES})(); return now.length > 0 && "
                    "now.every(([name]) => !old.includes(name)); }",
                    arg=[name for name, _ in tiles],
                    polling=50,
                    timeout=timeout_ms,
                )

        # The review queue: Exclude and Keep in turn on the first card.
        queue = page.locator("[data-testid=stRadio] label").filter(has_text=re.compile(r"^Review queue$"))
        await _timed(
            session,
            "queue",
            queue.click,
            lambda: page.wait_for_function(
                TEXT_SHOWN, arg=[["flagged samples left to review"]], polling=50, timeout=timeout_ms
            ),
        )
        await settle(page)
        main = page.get_by_test_id("stMain")
        for i in range(decisions):
            kind = "Exclude" if i % 2 == 0 else "Keep"
            button = main.get_by_role("button", name=re.compile(rf"^{kind}\b(?! all)")).first
            name = await button.evaluate(CARD_FILE)
            if name is None:
                raise AssertionError("a queue card without a file name")
            if kind == "Exclude":
                session.expected.add(by_file[name])
            decided = f"· {ticks + i + 1:,} decided ·"
            await think()
            await _timed(
                session,
                "decision",
                button.click,
                lambda d=decided: page.wait_for_function(TEXT_SHOWN, arg=[[d]], polling=25, timeout=timeout_ms),
            )
            await settle(page)

        # The download: what this session's training script would read. A failed download is an error the user
        # sees; they would click again, and so does the bench, once, to still check what the list holds.
        download_button = page.get_by_test_id("stMain").get_by_role("button", name="Exclusion list", exact=True)
        for attempt in (1, 2):
            session.step = f"download (attempt {attempt})"
            t0 = time.perf_counter()
            try:
                async with page.expect_download(timeout=min(timeout_ms, 60_000)) as info:
                    await download_button.click()
                download = await info.value
                text = Path(await download.path()).read_text()
            except Exception as exc:  # noqa: BLE001 - reported, then tried once more
                session.errors.append(
                    f"session {session.sid}: download attempt {attempt} failed: "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                )
                if attempt == 2:
                    raise
                await settle(page)
                continue
            session.times["download"].append(time.perf_counter() - t0)
            break
        session.downloaded = {line for line in text.splitlines() if line.strip()}
        session.done = True
    except Exception as exc:  # noqa: BLE001 - a failed session is a result, reported with the others
        session.errors.append(
            f"session {session.sid} at {session.step}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        )
        if shots is not None:
            try:
                await page.screenshot(path=str(shots / f"failed_session_{session.sid}.png"))
            except Exception:  # noqa: BLE001 - the page may be gone
                pass
    finally:
        try:
            boxes = page.locator("[data-testid=stException]")
            for i in range(await boxes.count()):
                session.errors.append(
                    f"session {session.sid} page exception: {(await boxes.nth(i).inner_text())[:300]}"
                )
        except Exception:  # noqa: BLE001 - the page may be gone
            pass


# With --no-webgl: the page's WebGL map cannot start in the bench's browsers. The server still builds and sends
# every map; only the drawing, software-rendered here on the server's own two cores, is left out.
NO_WEBGL = """(() => {
    const getContext = HTMLCanvasElement.prototype.getContext;
    HTMLCanvasElement.prototype.getContext = function (type, ...rest) {
        return /webgl/i.test(String(type)) ? null : getContext.call(this, type, ...rest);
    };
})();"""


# Every change of the page's connection state (Streamlit's client: CONNECTED, PINGING_SERVER, CONNECTING, ...) with
# the time (ms since the epoch): a click made while the page is not CONNECTED is dropped by Streamlit's client.
CONNECTION_LOG = """(() => {
    window.__benchConnection = [];
    let last = null;
    const look = () => {
        const app = document.querySelector('[data-testid=stApp]');
        const state = app ? app.getAttribute('data-test-connection-state') : null;
        if (state !== last) { window.__benchConnection.push([Date.now(), state]); last = state; }
    };
    new MutationObserver(look).observe(document, {subtree: true, childList: true, attributes: true,
        attributeFilter: ['data-test-connection-state']});
})();"""


async def run_wave(browser, url: str, sids: list[int], data: Data, opts, stagger_s: float = 0.0) -> list[Session]:
    """Sessions in their own browser contexts, all at once (or `stagger_s` apart); closed at the end."""
    classes = sorted(data.class_sizes, key=lambda c: -data.class_sizes[c])
    sessions = [Session(sid, classes[sid % len(classes)]) for sid in sids]
    contexts = [await browser.new_context(viewport=VIEWPORT, accept_downloads=True) for _ in sessions]
    if opts.no_webgl:
        for ctx in contexts:
            await ctx.add_init_script(NO_WEBGL)

    async def one(i: int) -> None:
        await asyncio.sleep(i * stagger_s)
        await run_session(
            contexts[i],
            url,
            sessions[i],
            data,
            opts.ticks,
            opts.decisions,
            opts.step_timeout * 1000,
            opts.shots,
            opts.autosave,
            tuple(opts.think),
        )

    try:
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(len(sessions)))), timeout=opts.wave_timeout)
    except TimeoutError:
        for s in sessions:
            if not s.done and not s.errors:
                s.errors.append(f"session {s.sid}: not done within the wave's {opts.wave_timeout} s")
    finally:
        for ctx in contexts:
            await ctx.close()
    return sessions


# ------------------------------------------------------------------------------------------------ team run
# --team: the decision store under a team's load. Two phases in one run, on the same data and the same warm cache:
# "per_session_store" (sign-in off; each session turns on "Keep my decisions on this server", so its decisions go
# to the database under its own token) and "team" (sign-in on through a real OpenID Connect provider on loopback;
# every session is a teammate, so each decision is shared and every session brings in the others' every few
# seconds). Each session opens the dataset and the review queue, then decides --decisions cards at --think pace.

TEAM_DOMAIN = "team.example"
STORE_FILE = "decisions.sqlite3"  # cleaner.decisions.store.DATABASE_FILE: the default database in the cache folder
LAST_DECISION = "Your last decision: {what} {name} (U undoes it)."  # the queue's confirmation of this session's own
# What the page looked like when a click did not complete: the script's state, the connection, the button.
CLICK_STATE = """(selector) => {
    const app = document.querySelector('[data-testid=stApp]');
    const found = Array.from(document.querySelectorAll(selector));
    const b = found[0];
    const r = b ? b.getBoundingClientRect() : null;
    const status = document.querySelector('[data-testid=stStatusWidget]');
    return {
        script_state: app ? app.getAttribute('data-test-script-state') : null,
        connection: app ? app.getAttribute('data-test-connection-state') : null,
        status_widget: status ? status.textContent : null,
        buttons_found: found.length,
        disabled: b ? b.disabled : null,
        box: r ? [Math.round(r.x), Math.round(r.y), Math.round(r.width), Math.round(r.height)] : null,
        stale: b ? Array.from(document.querySelectorAll('[data-stale=true]')).some(e => e.contains(b)) : null,
        at_point: r ? (document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) || {}).outerHTML?.slice(0, 200) : null,
    };
}"""
# The rows of the queue cards a person can see. Only those: Streamlit keeps a widget that a rerun replaced by another
# in the page, hidden (shown only while it has the focus), and a click on it is a click on nothing.
QUEUE_ROWS = """(kind) => Array.from(document.querySelectorAll(`[class*="st-key-q_${kind}_"]`))
    .filter(e => e.getClientRects().length > 0).map(e => {
    const key = Array.from(e.classList).find(c => c.startsWith(`st-key-q_${kind}_`));
    return parseInt(key.slice(`st-key-q_${kind}_`.length), 10);
})"""
# Queue buttons in the page that a person cannot see (the hidden widgets above), and those shown only by their focus.
GHOST_BUTTONS = """() => {
    const all = Array.from(document.querySelectorAll('[class*="st-key-q_"]')).filter(e => e.querySelector('button'));
    const hidden = all.filter(e => e.getClientRects().length === 0).length;
    const keys = all.map(e => Array.from(e.classList).find(c => c.startsWith('st-key-q_')));
    const twice = keys.filter((k, i) => keys.indexOf(k) !== i).length;
    return {hidden, twice};
}"""


@dataclass
class StoreSession:
    sid: int
    email: str = ""  # team phase: who signs in
    token: str = ""  # per-session phase: the token the page gave
    latencies: list[float] = field(default_factory=list)
    acknowledged: list[tuple[str, str]] = field(default_factory=list)  # (image path, kind) the page confirmed
    retargeted: int = 0  # cards that left the page (a teammate took them) between choosing and clicking
    click_errors: list[str] = field(default_factory=list)  # why each of those clicks failed (Playwright's first line)
    click_logs: list[dict] = field(default_factory=list)  # the first failed clicks' whole call logs and page states
    ghost_buttons: dict = field(default_factory=dict)  # GHOST_BUTTONS when the session ended
    connection: list = field(default_factory=list)  # CONNECTION_LOG: (epoch ms, state) as the page saw them
    clicks: list = field(default_factory=list)  # (epoch s when clicked, latency s or None when never confirmed)
    deciding_since: float = 0.0  # epoch s when the gate opened
    cards_replaced: list[int] = field(default_factory=list)  # per decision: cards on the page that were not before
    ws_bytes: int = 0  # bytes the page's websocket received while deciding (the server's messages)
    deciding: bool = False
    console: list[str] = field(default_factory=list)  # the page's first console errors and warnings
    errors: list[str] = field(default_factory=list)
    done: bool = False
    step: str = "start"


class Gate:
    """Every session arrives here once (done or failed) before deciding; the CPU window opens when all have."""

    def __init__(self, n: int):
        self.n, self.arrived, self.open = n, 0, asyncio.Event()

    def arrive(self) -> None:
        self.arrived += 1
        if self.arrived >= self.n:
            self.open.set()


async def sign_in(page, url: str, provider_url: str, email: str) -> None:
    """What a person does: the app's Sign in button, then the provider's form (who you are, Authorize)."""
    await page.goto(url)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.wait_for_url(f"{provider_url}/oauth2/authorize**")
    await page.locator("input[name=sub]").fill(email)
    await page.get_by_role("button", name="Authorize", exact=True).click()
    await page.wait_for_url(f"{url}/**")


async def run_store_session(
    ctx, url: str, session: StoreSession, data: Data, opts, gate: Gate, provider_url: str = ""
) -> None:
    """One reviewer: (sign in,) open the dataset, (keep decisions on the server,) open the queue, wait for everyone,
    then decide cards at a person's pace, each acknowledged by the queue's "Your last decision" line."""
    pace = random.Random(1000 + session.sid)
    page = await ctx.new_page()
    timeout_ms = opts.step_timeout * 1000
    page.set_default_timeout(timeout_ms)

    # The app's own errors and warnings (Streamlit's client logs why it drops its connection), for the report; not
    # the sign-in provider's (its test page asks a CDN for a stylesheet).
    def console(msg) -> None:
        if msg.type in ("error", "warning") and len(session.console) < 20:
            if str((msg.location or {}).get("url", "")).startswith(url):
                session.console.append(f"{msg.type}: {msg.text[:300]}")

    page.on("console", console)

    def frames(ws) -> None:
        def received(payload) -> None:
            if session.deciding:
                session.ws_bytes += len(payload)

        ws.on("framereceived", received)

    page.on("websocket", frames)
    arrived = False
    try:
        if session.email:
            session.step = "sign in"
            await sign_in(page, url, provider_url, session.email)
        else:
            await page.goto(url)
        session.step = "open"
        sidebar = page.get_by_test_id("stSidebar")
        server_folder = sidebar.locator("[data-testid=stRadio] label").filter(has_text=re.compile(r"^Server folder$"))
        await server_folder.click()
        await page.wait_for_function(TEXT_SHOWN, arg=[[f"· {len(data.paths):,} images ·"]], polling=100)
        await settle(page)
        if not session.email:
            session.step = "keep on server"
            session.token = await keep_on_server(page)
        session.step = "queue"
        queue = page.locator("[data-testid=stRadio] label").filter(has_text=re.compile(r"^Review queue$"))
        await queue.click()
        await page.wait_for_function(TEXT_SHOWN, arg=[["flagged samples left to review"]], polling=100)
        await settle(page)
        arrived = True
        gate.arrive()
        await gate.open.wait()
        session.deciding, session.deciding_since = True, time.time()
        for i in range(opts.decisions):
            kind = "excl" if i % 2 == 0 else "keep"
            session.step = f"decision {i + 1}"
            await pace_pause(pace, opts.think)
            for _attempt in range(5):
                rows = await page.evaluate(QUEUE_ROWS, kind)
                for _look in range(5):  # a run that is redrawing the cards can show none for a moment
                    if rows:
                        break
                    await asyncio.sleep(1)
                    await settle(page)
                    rows = await page.evaluate(QUEUE_ROWS, kind)
                before = set(await page.evaluate(QUEUE_ROWS, "excl"))
                if not rows:
                    raise AssertionError("the review queue shows no card")
                row = rows[session.sid % len(rows)]  # each session its own place: fewer images decided twice
                button = page.locator(f".st-key-q_{kind}_{row} button")
                name = os.path.basename(str(data.paths[row]))
                what = "excluded" if kind == "excl" else "kept"
                needle = LAST_DECISION.format(what=what, name=name)
                t0 = time.perf_counter()
                session.clicks.append([round(time.time(), 3), None])
                try:
                    await button.click(timeout=15_000)
                except Exception as exc:  # noqa: BLE001 - the card left the page (a teammate took it): choose again
                    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
                    # Playwright's first line, and the last of its call log that is not a pause: what held the click
                    cause = next((ln for ln in reversed(lines) if not ln.startswith("- waiting")), lines[-1])
                    session.click_errors.append(f"{type(exc).__name__}: {lines[0][:100]} / {cause[:200]}")
                    if len(session.click_logs) < 2:  # the whole call log and the page's state, for the report
                        state = await page.evaluate(CLICK_STATE, f".st-key-q_{kind}_{row} button")
                        session.click_logs.append({"call_log": lines[-40:], "page": state})
                    await settle(page)
                    if await page.evaluate(TEXT_SHOWN, [[needle]]):  # the click landed all the same: it counts
                        session.acknowledged.append((str(data.paths[row]), "exclude" if kind == "excl" else "keep"))
                        break
                    session.retargeted += 1
                    continue
                await page.wait_for_function(TEXT_SHOWN, arg=[[needle]], polling=25, timeout=timeout_ms)
                session.latencies.append(time.perf_counter() - t0)
                session.clicks[-1][1] = round(session.latencies[-1], 3)
                session.acknowledged.append((str(data.paths[row]), "exclude" if kind == "excl" else "keep"))
                await settle(page)
                session.cards_replaced.append(len(set(await page.evaluate(QUEUE_ROWS, "excl")) - before))
                break
            else:
                raise AssertionError("five cards in a row left the page before they could be clicked")
        session.done = True
        session.deciding = False
    except Exception as exc:  # noqa: BLE001 - a failed session is a result
        session.errors.append(
            f"session {session.sid} at {session.step}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        )
        if opts.shots is not None:
            try:
                await page.screenshot(path=str(opts.shots / f"failed_store_session_{session.sid}.png"))
            except Exception:  # noqa: BLE001 - the page may be gone
                pass
    finally:
        if not arrived:
            gate.arrive()
        try:
            session.ghost_buttons = await page.evaluate(GHOST_BUTTONS)
            session.connection = await page.evaluate("() => window.__benchConnection || []")
        except Exception:  # noqa: BLE001 - the page may be gone
            pass


async def pace_pause(pace: random.Random, think: list[float]) -> None:
    if think[1] > 0:
        await asyncio.sleep(pace.uniform(*think))


def browsers_cpu_s() -> float:
    """CPU seconds of this process's Chromium processes (the browsers driving the sessions), alive now."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name().startswith("chrom"):
                t = child.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            pass
    return total


def connection_drops(sessions: list[StoreSession]) -> list[dict]:
    """Each session whose page left CONNECTED after the gate opened: when (s after the gate), for how long, and its
    clicks then (s after the gate, and the latency, None when never confirmed)."""
    found = []
    for s in sessions:
        if not s.deciding_since:
            continue
        since = s.deciding_since * 1000
        changes = [(t, state) for t, state in s.connection if t >= since]
        if not any(state != "CONNECTED" for _, state in changes):
            continue
        found.append(
            {
                "session": s.sid,
                "states": [[round((t - since) / 1000, 2), state] for t, state in changes],
                "clicks": [[round(t - s.deciding_since, 2), latency] for t, latency in s.clicks],
            }
        )
    return found


def store_events(db: Path) -> list[tuple[str, str, str, str]]:
    """(space, image path, kind, decided_by) of every decision event in the SQLite store, read-only."""
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(
            "SELECT space, image_path, kind, decided_by FROM events WHERE stream = 'decision' ORDER BY id"
        ).fetchall()


def store_bytes(db: Path) -> int:
    """The database's size on disk: the file and its write-ahead log."""
    return sum(p.stat().st_size for p in (db, db.with_name(db.name + "-wal")) if p.exists())


def event_bytes(db: Path) -> int | None:
    """Bytes the events take in the database: the used bytes of the events table's pages and its indexes' (SQLite's
    dbstat), so the schema and the empty pages of a short run do not swamp the figure. None without dbstat."""
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        try:
            found = conn.execute(
                "SELECT sum(pgsize - unused) FROM dbstat WHERE name IN "
                "(SELECT name FROM sqlite_master WHERE tbl_name = 'events')"
            ).fetchone()[0]
        except sqlite3.OperationalError:  # SQLite built without the dbstat table
            return None
    return int(found or 0)


def lost_and_crossed(sessions: list[StoreSession], events: list[tuple[str, str, str, str]]) -> tuple[int, int]:
    """Acknowledged decisions with no event of their session in the store, and events in a session's name that it
    never made (team: by its e-mail in the team space; per session: in its token's space)."""
    sys.path.insert(0, str(ROOT))
    from cleaner.decisions.store import TEAM_SPACE, token_space

    lost = crossed = 0
    for s in sessions:
        if s.email:
            theirs = Counter((p, k) for space, p, k, who in events if space == TEAM_SPACE and who == s.email)
        elif s.token:
            theirs = Counter((p, k) for space, p, k, _ in events if space == token_space(s.token))
        else:
            continue
        made = Counter(s.acknowledged)
        lost += sum((made - theirs).values())
        crossed += sum((theirs - made).values())
    return lost, crossed


async def store_phase(browser, data: Data, opts, work: Path, warm_cache: Path, team: bool, provider_url: str) -> dict:
    """One phase of the team run on its own server and its own copy of the warm cache (so its own database)."""
    import psutil

    name = "team" if team else "per_session_store"
    cache = work / f"cache_{name}"
    shutil.rmtree(cache, ignore_errors=True)
    shutil.copytree(warm_cache, cache, ignore=shutil.ignore_patterns(f"{STORE_FILE}*"))
    env = dict(opts.env)
    args: list[str] = []
    port = _free_port()
    if team:  # sign-in through the provider; the secrets file lives in the work folder, never in the repository
        secrets_file = work / "secrets" / "secrets.toml"
        secrets_file.parent.mkdir(exist_ok=True)
        secrets_file.write_text(
            "[auth]\n"
            f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
            f'cookie_secret = "{os.urandom(32).hex()}"\n'
            'client_id = "cleaner-bench"\n'
            f'client_secret = "{os.urandom(16).hex()}"\n'
            f'server_metadata_url = "{provider_url}/.well-known/openid-configuration"\n'
        )
        secrets_file.chmod(0o600)
        env["CLEANER_ALLOWED_USERS"] = f"@{TEAM_DOMAIN}"
        args = ["--secrets.files", str(secrets_file)]
    log(f"{name}: server on {cache}; {opts.sessions} sessions")
    server = Server(
        cache, data.root, work / f"server_{name}.log", opts.session_ttl, extra_env=env, extra_args=args, port=port
    )
    proc = psutil.Process(server.proc.pid)
    sessions = [
        StoreSession(sid, email=f"reviewer{sid:02d}@{TEAM_DOMAIN}" if team else "") for sid in range(opts.sessions)
    ]
    gate = Gate(len(sessions))
    contexts = [await browser.new_context(viewport=VIEWPORT) for _ in sessions]
    for ctx in contexts:
        await ctx.add_init_script(CONNECTION_LOG)
        if opts.no_webgl:
            await ctx.add_init_script(NO_WEBGL)
    cpu: dict[str, float] = {}

    async def window() -> None:
        await gate.open.wait()
        t = proc.cpu_times()
        cpu["start"], cpu["wall0"], cpu["browsers0"] = t.user + t.system, time.monotonic(), browsers_cpu_s()

    try:
        watcher = asyncio.ensure_future(window())
        await asyncio.wait_for(
            asyncio.gather(
                *(
                    run_store_session(c, server.url, s, data, opts, gate, provider_url)
                    for c, s in zip(contexts, sessions)
                )
            ),
            timeout=opts.wave_timeout,
        )
        t = proc.cpu_times()
        cpu["end"], cpu["wall1"], cpu["browsers1"] = t.user + t.system, time.monotonic(), browsers_cpu_s()
        watcher.cancel()
        found, noise = server.log_errors()
    except TimeoutError:
        found, noise = [f"{name}: not done within the wave's {opts.wave_timeout} s"], 0
    finally:
        for ctx in contexts:
            await ctx.close()
        server.stop()
    db = cache / STORE_FILE
    events = store_events(db) if db.exists() else []
    size = store_bytes(db) if db.exists() else 0
    used = event_bytes(db) if events else None
    lost, crossed = lost_and_crossed(sessions, events)
    latencies = [t for s in sessions for t in s.latencies]
    decisions = len(latencies)
    server_cpu = cpu["end"] - cpu["start"] if "end" in cpu and "start" in cpu else None  # None: the phase timed out
    return {
        "sessions": len(sessions),
        "completed": sum(s.done for s in sessions),
        "decisions": decisions,
        "decision_p50_s": percentile(latencies, 50),
        "decision_p95_s": percentile(latencies, 95),
        "decision_max_s": round(max(latencies), 3) if latencies else None,
        "latencies_by_session_s": [[round(t, 3) for t in s.latencies] for s in sessions],
        "deciding_wall_s": round(cpu["wall1"] - cpu["wall0"], 1) if "wall1" in cpu and "wall0" in cpu else None,
        "server_cpu_s": round(server_cpu, 2) if server_cpu is not None else None,
        "server_cpu_per_decision_s": round(server_cpu / decisions, 4) if decisions and server_cpu is not None else None,
        "browsers_cpu_per_decision_s": round((cpu["browsers1"] - cpu["browsers0"]) / decisions, 3)
        if decisions and "browsers1" in cpu
        else None,
        "websocket_kb_per_decision": round(sum(s.ws_bytes for s in sessions) / decisions / 1024, 1)
        if decisions
        else None,
        "cards_replaced_per_decision": round(sum(sum(s.cards_replaced) for s in sessions) / decisions, 2)
        if decisions
        else None,
        "events": len(events),
        "decisions_lost": lost,
        "decisions_crossed": crossed,
        "retargeted_clicks": sum(s.retargeted for s in sessions),
        "failed_click_reasons": dict(Counter(e for s in sessions for e in s.click_errors).most_common(5)),
        "failed_click_logs": [log for s in sessions for log in s.click_logs][:4],
        "console_errors": dict(Counter(m for s in sessions for m in s.console).most_common(8)),
        "hidden_queue_buttons": sum(s.ghost_buttons.get("hidden", 0) for s in sessions),
        "connection_drops_while_deciding": connection_drops(sessions),
        "queue_buttons_twice": sum(s.ghost_buttons.get("twice", 0) for s in sessions),
        "db_bytes": size,
        "db_bytes_per_10k_decisions": round(size / len(events) * 10_000) if events else None,
        "db_event_bytes_per_10k_decisions": round(used / len(events) * 10_000) if used is not None else None,
        "server_log_errors": found,
        "server_log_websocket_disconnects": noise,
        "page_errors": [e for s in sessions for e in s.errors],
    }


async def team_bench(opts, work: Path, out: dict) -> dict:
    """The per-session store and team mode, one after the other in one run, on the same data and warm cache."""
    from playwright.async_api import async_playwright

    try:
        import oidc_provider_mock
    except ImportError as exc:
        raise SystemExit("--team needs oidc-provider-mock (pip install -r requirements-dev.txt)") from exc

    data = write_data(work / "allowed", opts.n, opts.dims, opts.clusters, opts.seed)
    warm_cache = work / "cache_warm"
    precompute(data, warm_cache, timeout=opts.wave_timeout)
    out.update(
        {
            "mode": "team",
            "n": opts.n,
            "dims": opts.dims,
            "sessions": opts.sessions,
            "decisions_per_session": opts.decisions,
            "think_s": list(opts.think),
            "webgl_map_drawn": not opts.no_webgl,
            "server_env": opts.env,
            "cores": os.cpu_count(),
            "load_average_start": round(os.getloadavg()[0], 2),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the provider's request lines are not the bench's
    with oidc_provider_mock.run_server_in_thread() as provider:  # loopback only, in this process
        host, port = provider.server_address[:2]
        provider_url = f"http://{host}:{port}"
        order = (True, False) if opts.team_first else (False, True)
        out["phase_order"] = ["team" if t else "per_session_store" for t in order]
        async with async_playwright() as pw:
            for team in [t for t in order if opts.phase in ("both", "team" if t else "per-session")]:
                # A fresh browser for each phase: one that already ran ten sessions would start the second slower.
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                try:
                    name = "team" if team else "per_session_store"
                    out[name] = await store_phase(browser, data, opts, work, warm_cache, team, provider_url)
                    log(f"{name}: p95 decision {out[name]['decision_p95_s']} s, {out[name]['decisions']} decisions")
                finally:
                    await browser.close()
    if opts.phase != "both":  # one phase alone: for finding a fault, with no comparison to report
        return out
    solo, team = out["per_session_store"], out["team"]
    out["p95_decision_per_session_store_s"] = solo["decision_p95_s"]
    out["p95_decision_team_s"] = team["decision_p95_s"]
    out["decisions_lost"] = solo["decisions_lost"] + team["decisions_lost"]
    out["p95_ratio_team_to_per_session"] = p95_ratio_interval(
        solo["latencies_by_session_s"], team["latencies_by_session_s"], seed=opts.seed
    )
    out["load_average_end"] = round(os.getloadavg()[0], 2)
    out["targets_met"] = {
        "team_p95_decision_no_worse": None
        if None in (solo["decision_p95_s"], team["decision_p95_s"])
        else team["decision_p95_s"] <= solo["decision_p95_s"],
        "no_decision_lost": out["decisions_lost"] == 0,
        "no_attribution_crossed": solo["decisions_crossed"] + team["decisions_crossed"] == 0,
        "no_errors": not any(p["page_errors"] or p["server_log_errors"] for p in (solo, team)),
    }
    return out


# ------------------------------------------------------------------------------------------------ report


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def p95_ratio_interval(
    solo: list[list[float]], team: list[list[float]], seed: int, reps: int = 4000, level: float = 0.95
) -> dict | None:
    """The team's p95 decision latency over the per-session store's, with a percentile-bootstrap interval that
    resamples whole sessions in each phase (a session's decisions share its page and its pace, so they are not
    independent draws)."""
    solo, team = [s for s in solo if s], [s for s in team if s]
    if not solo or not team:
        return None
    rng = np.random.default_rng(seed)

    def p95_of(sessions: list[list[float]], picks: np.ndarray) -> float:
        return float(np.percentile(np.concatenate([sessions[i] for i in picks]), 95))

    ratios = np.array(
        [
            p95_of(team, rng.integers(0, len(team), len(team))) / p95_of(solo, rng.integers(0, len(solo), len(solo)))
            for _ in range(reps)
        ]
    )
    point = p95_of(team, np.arange(len(team))) / p95_of(solo, np.arange(len(solo)))
    low, high = np.percentile(ratios, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return {
        "ratio": round(point, 3),
        "interval": [round(float(low), 3), round(float(high), 3)],
        "level": level,
        "method": f"percentile bootstrap over sessions, {reps} resamples of each phase's sessions",
        "team_worse_beyond_noise": bool(low > 1),
    }


def autosave_mismatches(sessions: list[Session], cache: Path, digest: str, wait_s: float = 30) -> int:
    """Sessions whose autosaved list (read with their token) differs from their download, after the last save."""
    sys.path.insert(0, str(ROOT))
    from cleaner.decisions.autosave import AutosaveError, AutosaveStore, Owner

    store = AutosaveStore.under(cache)
    bad = 0
    for s in sessions:
        if not s.done or not s.token:
            continue
        deadline = time.monotonic() + wait_s  # the page saves a few seconds after the last change
        while True:
            try:
                parsed = store.load(Owner.from_token(s.token), digest).decisions
                saved = {p for p, d in parsed.items() if d.kind == "exclude"}
            except AutosaveError as exc:
                saved = {f"unreadable: {exc}"}
            if saved == s.downloaded or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if saved != s.downloaded:
            bad += 1
            s.errors.append(f"session {s.sid}: its autosaved exclusions differ from its download")
    return bad


def summarise(sessions: list[Session]) -> dict:
    out: dict = {"sessions": len(sessions), "completed": sum(s.done for s in sessions)}
    for action in ACTIONS:
        values = [t for s in sessions for t in s.times[action]]
        out[action] = {
            "n": len(values),
            "p50_s": percentile(values, 50),
            "p95_s": percentile(values, 95),
            "max_s": round(max(values), 3) if values else None,
        }
    lost = crossed = 0
    everyone = {p: s.sid for s in sessions for p in s.expected}
    for s in sessions:
        if s.downloaded is None:
            continue
        lost += len(s.expected - s.downloaded)
        for p in s.downloaded - s.expected:
            crossed += 1
            if p in everyone:
                s.errors.append(f"session {s.sid} downloaded session {everyone[p]}'s exclusion {p}")
    out["lost"], out["crossed"] = lost, crossed
    out["page_errors"] = [e for s in sessions for e in s.errors]
    return out


async def rss_settled(
    server: Server, since: float, min_s: float = 45.0, quiet_mb: float = 5.0, timeout_s: float = 150.0
) -> float:
    """The server's RSS once it has stopped moving (three 2-second samples within quiet_mb), at least min_s after
    `since` (the warm-up loads UMAP's kernels into the server 10 s after a first visit, then 15-20 s more), bounded."""
    await asyncio.sleep(max(0.0, since + min_s - time.monotonic()))
    samples: list[float] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        samples.append(server.rss())
        if len(samples) >= 3 and max(samples[-3:]) - min(samples[-3:]) < quiet_mb:
            break
        await asyncio.sleep(2)
    return samples[-1]


async def settle_rss(server: Server, ttl_s: int, browser) -> float:
    """The server's RSS once the closed sessions are dropped. Streamlit keeps a closed session for the TTL and
    drops it lazily, when its session store is next touched: a short visit after the TTL touches it."""
    await asyncio.sleep(ttl_s + 5)
    ctx = await browser.new_context(viewport=VIEWPORT)
    try:
        page = await ctx.new_page()
        await page.goto(server.url)
        await page.get_by_test_id("stSidebar").wait_for(timeout=120_000)
    finally:
        await ctx.close()
    await asyncio.sleep(ttl_s + 5)  # the visit's own session goes too, at the next touch
    return round(await rss_settled(server, since=time.monotonic(), min_s=0), 1)


async def bench(opts, work: Path, out: dict) -> dict:
    """Fills `out` as the phases finish, so a run stopped by --max-minutes still reports what it measured."""
    from playwright.async_api import async_playwright

    data = write_data(work / "allowed", opts.n, opts.dims, opts.clusters, opts.seed)
    warm_cache = work / "cache_warm"
    precompute(data, warm_cache, timeout=opts.wave_timeout)
    out.update(
        {
            "n": opts.n,
            "dims": opts.dims,
            "sessions": opts.sessions,
            "ticks_per_session": opts.ticks,
            "autosave": opts.autosave,
            "webgl_map_drawn": not opts.no_webgl,
            "server_env": opts.env,
            "decisions_per_session": opts.decisions,
            "cores": os.cpu_count(),
            "load_average_start": round(os.getloadavg()[0], 2),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "session_ttl_s": opts.session_ttl,
            "think_s": list(opts.think),
        }
    )
    errors: list[str] = []
    disconnect_noise = 0
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            # ---------------------------------------------------------------- warm cache
            log(f"warm cache: server on {warm_cache}")
            server = Server(warm_cache, data.root, work / "server_warm.log", opts.session_ttl, extra_env=opts.env)
            try:
                out["rss_idle_mb"] = round(server.rss(), 1)
                t = time.monotonic()
                log("warm: one session alone")
                solo = await run_wave(browser, server.url, [0], data, opts)
                # A first visit starts the layout service's warm-up (UMAP's kernels loaded into the server a few
                # seconds later): part of one user's footprint, so wait for it before taking that figure.
                settled = await rss_settled(server, since=t)
                out["rss_one_session_mb"] = round(max(server.peak_since(t), settled), 1)
                out["warm_solo"] = summarise(solo)
                all_sessions = list(solo)
                waves: list[dict] = out.setdefault("warm_waves", [])
                digest = data_digest(data) if opts.autosave else ""
                for wave in (1, 2):
                    t = time.monotonic()
                    log(f"warm: wave {wave} of {opts.sessions} sessions at once")
                    first = 1 + (wave - 1) * opts.sessions
                    cpu = CpuShare(server.proc.pid)
                    sessions = await run_wave(
                        browser, server.url, list(range(first, first + opts.sessions)), data, opts
                    )
                    peak = round(server.peak_since(t), 1)
                    out.setdefault("cpu_warm_waves", []).append(cpu.stop())
                    if opts.autosave:
                        out.setdefault("autosave_mismatches", 0)
                        out["autosave_mismatches"] += autosave_mismatches(sessions, warm_cache, digest)
                    log(f"warm: wave {wave} done (peak RSS {peak} MB); waiting for the closed sessions to expire")
                    after = await settle_rss(server, opts.session_ttl, browser)
                    waves.append({"peak_rss_mb": peak, "rss_after_close_mb": after, **summarise(sessions)})
                    all_sessions += sessions
                out["rss_peak_warm_mb"] = max(w["peak_rss_mb"] for w in waves)
                out["rss_per_extra_session_mb"] = round(
                    (waves[0]["peak_rss_mb"] - out["rss_one_session_mb"]) / max(1, opts.sessions - 1), 1
                )
                out["rss_after_wave1_mb"], out["rss_after_wave2_mb"] = (w["rss_after_close_mb"] for w in waves)
                found, noise = server.log_errors()
                errors += found
                disconnect_noise += noise
            finally:
                server.stop()
            warm = summarise([s for s in all_sessions if s.sid > 0])

            # ---------------------------------------------------------------- cold cache
            cold: dict = {}
            layout_writes = graph_writes = {"writes": None, "distinct": None}
            if opts.skip_cold:
                return _finish(out, warm, cold, layout_writes, graph_writes, errors, disconnect_noise)
            cold_cache = work / "cache_cold"
            shutil.rmtree(cold_cache, ignore_errors=True)
            cold_cache.mkdir()
            if (warm_cache / "numba").is_dir() and not opts.cold_numba:
                shutil.copytree(warm_cache / "numba", cold_cache / "numba")  # kept by a restart, as in production
            log(f"cold cache: server on {cold_cache}; {opts.sessions} sessions {opts.cold_stagger} s apart")
            server = Server(cold_cache, data.root, work / "server_cold.log", opts.session_ttl, extra_env=opts.env)
            layouts = StoreWrites(cold_cache / "layouts", "*.npy")
            graphs = StoreWrites(cold_cache / "graphs", "graph_*.npz")
            try:
                t = time.monotonic()
                cpu = CpuShare(server.proc.pid)
                cold_sessions = await run_wave(
                    browser, server.url, list(range(opts.sessions)), data, opts, stagger_s=opts.cold_stagger
                )
                out["rss_peak_cold_mb"] = round(server.peak_since(t), 1)
                out["cpu_cold_wave"] = cpu.stop()
                # The layouts may still be on their way when the sessions are done: wait for them, bounded.
                deadline = time.monotonic() + opts.step_timeout
                while time.monotonic() < deadline and len(list((cold_cache / "layouts").glob("*.npy"))) < 2:
                    await asyncio.sleep(1)
                found, noise = server.log_errors()
                errors += found
                disconnect_noise += noise
            finally:
                layout_writes, graph_writes = layouts.stop(), graphs.stop()
                server.stop()
            cold = summarise(cold_sessions)
        finally:
            await browser.close()

    return _finish(out, warm, cold, layout_writes, graph_writes, errors, disconnect_noise)


def _finish(
    out: dict, warm: dict, cold: dict, layout_writes: dict, graph_writes: dict, errors: list[str], disconnect_noise: int
) -> dict:
    """The headline keys and the targets, from the phases' summaries."""
    empty = {"p95_s": None}
    out["warm"], out["cold"] = warm, cold
    out["layout_jobs_cold"] = layout_writes["writes"]
    out["layouts_cold"] = layout_writes["distinct"]  # the 3D and the 2D map: 2 jobs means each computed once
    out["graph_jobs_cold"] = graph_writes["writes"]
    out["p95_tick_s"] = warm["tick"]["p95_s"]
    out["p95_decision_s"] = warm["decision"]["p95_s"]
    out["p95_tick_cold_s"] = cold.get("tick", empty)["p95_s"]
    out["p95_decision_cold_s"] = cold.get("decision", empty)["p95_s"]
    out["server_log_errors"] = errors
    out["server_log_websocket_disconnects"] = disconnect_noise
    parts = [p for p in (out["warm_solo"], warm, cold) if p]
    out["errors"] = len(errors) + sum(len(p["page_errors"]) for p in parts)
    out["crossed_or_lost"] = sum(p[k] for p in parts for k in ("lost", "crossed"))
    out["load_average_end"] = round(os.getloadavg()[0], 2)
    out["targets_met"] = {
        "p95_tick_le_1s": out["p95_tick_s"] is not None and out["p95_tick_s"] <= 1.0,
        "p95_decision_le_1_5s": out["p95_decision_s"] is not None and out["p95_decision_s"] <= 1.5,
        "rss_per_extra_session_le_60mb": out["rss_per_extra_session_mb"] <= 60,
        "no_errors": out["errors"] == 0,
        "nothing_crossed_or_lost": out["crossed_or_lost"] == 0,
        "cold_layouts_computed_once": bool(cold) and out["layout_jobs_cold"] == out["layouts_cold"],
    }
    return out


def markdown_table(out: dict) -> str:
    """Per action p50 / p95 seconds, warm and cold, as a Markdown table (for the README)."""

    def cell(part: dict, action: str) -> str:
        found = part.get(action) or {}
        if not found.get("n"):
            return "–"
        return f"{found['p50_s']:.2f} / {found['p95_s']:.2f} ({found['n']})"

    rows = ["| action | warm cache: p50 / p95 s (count) | cold cache: p50 / p95 s (count) |", "|---|---|---|"]
    rows += [f"| {a} | {cell(out['warm'], a)} | {cell(out['cold'], a)} |" for a in ACTIONS]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=10, help="browser sessions per wave")
    ap.add_argument("--n", type=int, default=100_000, help="rows of synthetic data")
    ap.add_argument("--dims", type=int, default=512)
    ap.add_argument("--clusters", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ticks", type=int, default=20, help="Exclude ticks per session, across gallery pages")
    ap.add_argument("--decisions", type=int, default=10, help="review-queue decisions per session")
    ap.add_argument("--step-timeout", type=float, default=300, help="seconds any one step may take")
    ap.add_argument("--wave-timeout", type=float, default=1200, help="seconds a wave may take")
    ap.add_argument(
        "--session-ttl",
        type=int,
        default=30,
        help="the server's disconnectedSessionTTL: closed sessions are dropped this long after",
    )
    ap.add_argument(
        "--think",
        type=float,
        nargs=2,
        default=[0.0, 0.0],
        metavar=("MIN_S", "MAX_S"),
        help="each session pauses a random time in this range before every tick and review decision, "
        "as a person looks before clicking (default 0 0: click as soon as the page is idle)",
    )
    ap.add_argument("--cold-stagger", type=float, default=1.0, help="seconds between arrivals in the cold wave")
    ap.add_argument("--cold-numba", action="store_true", help="cold wave without numba's compiled kernels too")
    ap.add_argument("--skip-cold", action="store_true", help="warm cache only (no cold wave)")
    ap.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the server (e.g. MALLOC_ARENA_MAX=2); repeatable",
    )
    ap.add_argument(
        "--no-webgl",
        action="store_true",
        help="the browsers do not draw the WebGL map (software-rendered here, on the server's cores)",
    )
    ap.add_argument(
        "--autosave",
        action="store_true",
        help="warm waves: each session turns on 'Keep my decisions on this server'; its saved list "
        "must match its download",
    )
    ap.add_argument("--max-minutes", type=float, default=60, help="the whole run stops after this long")
    ap.add_argument(
        "--prepare-only",
        action="store_true",
        help="write the data and the warm cache into --workdir, then stop (a later run reuses them)",
    )
    ap.add_argument(
        "--team",
        action="store_true",
        help="the decision store under load instead of the waves: N sessions keeping their decisions on the server "
        "(no sign-in), then N signed-in teammates, each deciding --decisions queue cards at --think pace",
    )
    ap.add_argument(
        "--team-first",
        action="store_true",
        help="with --team: the team phase first (the two orders show whether going second costs a phase time)",
    )
    ap.add_argument(
        "--phase",
        choices=("both", "per-session", "team"),
        default="both",
        help="with --team: run one phase alone (no comparison; for finding a fault faster)",
    )
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--workdir", type=Path, help="keep data and the warm cache here (default: a temp folder, removed)")
    opts = ap.parse_args(argv)
    opts.env = dict(item.split("=", 1) for item in opts.server_env)
    if not 0 <= opts.think[0] <= opts.think[1]:
        ap.error("--think wants MIN_S MAX_S with 0 <= MIN_S <= MAX_S")
    if not Path(CHROMIUM).exists():
        ap.error(f"{CHROMIUM} not found (Debian package 'chromium')")

    work = opts.workdir or Path(tempfile.mkdtemp(prefix="cleaner-load-"))
    work.mkdir(parents=True, exist_ok=True)
    opts.shots = work if opts.workdir else None  # screenshots of failed sessions, kept with the work folder
    if opts.prepare_only:
        data = write_data(work / "allowed", opts.n, opts.dims, opts.clusters, opts.seed)
        precompute(data, work / "cache_warm", timeout=opts.wave_timeout)
        return {"prepared": str(work)}
    try:
        out: dict = {}
        try:
            run = team_bench if opts.team else bench
            asyncio.run(asyncio.wait_for(run(opts, work, out), timeout=opts.max_minutes * 60))
        except TimeoutError:
            out["stopped"] = (
                f"--max-minutes {opts.max_minutes} reached: the phases after the last one reported did not run"
            )
    finally:
        if not opts.workdir:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(out, indent=2)
    if "warm" in out:
        print(markdown_table(out), file=sys.stderr)
    if opts.json:
        opts.json.write_text(text + "\n")
    print(text)
    return out


if __name__ == "__main__":
    main()
