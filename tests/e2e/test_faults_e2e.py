"""A browser tab closed while its map is computed: the server finishes the job for the next visitor and keeps
nothing of the closed tab (no thread or job per visit left behind).

Its own server, with an empty cache folder, so the map is really computed while the tab is open.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from cleaner.io.dataset import npz_bytes

from .helpers import CHROMIUM, VIEWPORT, streamlit_command

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 240  # bound on each wait: a cold cache compiles UMAP's kernels before the first layout
PREVIEW = "PCA preview while the UMAP map"
SCRIPT_IDLE = (
    "() => { const a = document.querySelector('[data-testid=stApp]');"
    " return a && a.getAttribute('data-test-script-state') !== 'running'; }"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("Threads:"))


def _wait(condition, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.25)


@pytest.fixture
def cold_server(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (Debian package 'chromium'): browser tests need it")
    allowed, cache = tmp_path / "allowed", tmp_path / "cache"
    allowed.mkdir()
    cache.mkdir()
    rng = np.random.default_rng(11)
    centres = rng.normal(0, 6, size=(4, 16))
    emb = np.vstack([c + rng.normal(0, 0.7, size=(1000, 16)) for c in centres]).astype(np.float32)
    labels = np.repeat(np.arange(4), 1000)
    (allowed / "closed_tab.npz").write_bytes(
        npz_bytes(emb, labels, np.array([f"/nowhere/{i}.png" for i in range(len(emb))]))
    )
    port = _free_port()
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        streamlit_command("streamlit_app.py", port),
        cwd=REPO,
        env={**os.environ, "CLEANER_CACHE_DIR": str(cache), "CLEANER_ALLOWED_ROOTS": str(allowed)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def healthy() -> bool:
        assert proc.poll() is None, (tmp_path / "server.log").read_text(errors="replace")[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
                return resp.read().strip() == b"ok"
        except OSError:
            return False

    try:
        _wait(healthy, "the server answers")
        yield f"http://127.0.0.1:{port}", proc.pid, cache
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the group this fixture started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
        log.close()


def _open_server_file(browser, url: str):
    ctx = browser.new_context(viewport=VIEWPORT)
    page = ctx.new_page()
    page.set_default_timeout(WAIT_S * 1000)
    page.goto(url)
    page.get_by_test_id("stSidebar").locator("[data-testid=stRadio] label").filter(
        has_text=re.compile(r"^Server folder$")
    ).click()
    page.get_by_text("4,000 images", exact=False).first.wait_for()
    return ctx, page


def test_closing_the_tab_mid_computation_finishes_the_job_and_leaks_nothing(cold_server, chromium_browser):
    url, pid, cache = cold_server
    layouts = cache / "layouts"
    browser = chromium_browser  # the run's one Chromium (conftest): the sync API allows one at a time
    ctx, page = _open_server_file(browser, url)
    page.get_by_text(PREVIEW, exact=False).wait_for()  # the layouts are being computed
    assert len(list(layouts.glob("*.npy"))) < 2
    ctx.close()  # the tab goes away mid-computation

    _wait(lambda: len(list(layouts.glob("*.npy"))) == 2, "both layouts reach the cache")
    _wait(lambda: not list(layouts.glob("*.tmp")), "no half-written layout is left")
    after_first = _threads(pid)

    # The next visitors get the finished map at once, and leave nothing behind either. (A pool may start
    # a thread lazily on a later visit: a leak is a thread per visit, so three visits tell them apart.)
    for _ in range(3):
        ctx, page = _open_server_file(browser, url)
        page.wait_for_function(SCRIPT_IDLE)
        assert PREVIEW not in page.inner_text("body")
        assert not page.locator("[data-testid=stException]").count()
        ctx.close()
    _wait(lambda: _threads(pid) <= after_first + 2, "the visits' threads end")
