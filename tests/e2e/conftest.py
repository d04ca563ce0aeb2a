"""Fixtures for the browser tests: one app server for the session, a fresh browser context per test.

The server is `streamlit run streamlit_app.py` in its own process group, with its own cache folder and an
allowed folder holding the test NPZ and images. Its log goes to the artifacts folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
E2E_DIR = Path(__file__).resolve().parent
STARTUP_TIMEOUT_S = 180  # a cold server may compile UMAP's numba code before it answers quickly


def _artifacts() -> Path:
    return Path(os.environ.get("CLEANER_E2E_ARTIFACTS") or REPO / "artifacts" / "e2e")


def pytest_report_header(config):
    return f"e2e artifacts (screenshots, server log): {_artifacts()}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if any(
        Path(str(getattr(r, "fspath", ""))).resolve().is_relative_to(E2E_DIR)
        for reports in terminalreporter.stats.values()
        for r in reports
        if hasattr(r, "fspath")
    ):
        terminalreporter.write_line(f"e2e artifacts (screenshots, server log): {_artifacts()}")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


# ---------------------------------------------------------------- test data


@dataclass(frozen=True)
class SmallDataset:
    npz: Path
    broken_npz: Path
    labels: np.ndarray
    paths: np.ndarray


def _write_small_dataset(root: Path, n_per_class: int = 100) -> SmallDataset:
    """~300 rows in 3 well separated classes, each row a real PNG drawn by Pillow."""
    from PIL import Image

    rng = np.random.default_rng(7)
    classes = ["bird", "cat", "dog"]
    colours = [(200, 40, 40), (40, 160, 40), (40, 40, 200)]
    centres = rng.normal(0, 8, size=(len(classes), 32))
    image_dir = root / "small_images"
    image_dir.mkdir(parents=True, exist_ok=True)
    emb, labels, paths = [], [], []
    for c, name in enumerate(classes):
        for i in range(n_per_class):
            pixels = np.clip(np.array(colours[c]) + rng.normal(0, 25, size=(32, 32, 3)), 0, 255).astype(np.uint8)
            pixels[8:24, 8 + (i % 8) : 16 + (i % 8)] = 255  # a white bar that moves: the images differ
            path = image_dir / f"{name}_{i:03d}.png"
            Image.fromarray(pixels, mode="RGB").save(path)
            emb.append(centres[c] + rng.normal(0, 0.6, size=32))
            labels.append(name)
            paths.append(str(path.resolve()))
    npz = root / "small_upload.npz"
    np.savez_compressed(
        npz, embeddings=np.asarray(emb, dtype=np.float32), labels=np.asarray(labels), image_paths=np.asarray(paths)
    )
    broken = root / "x.npz"
    broken.write_bytes(np.random.default_rng(1).bytes(4096))
    return SmallDataset(npz=npz, broken_npz=broken, labels=np.asarray(labels), paths=np.asarray(paths))


@dataclass(frozen=True)
class AppServer:
    url: str
    cache_dir: Path
    allowed_root: Path
    small: SmallDataset
    log: Path

    def demo(self) -> tuple[np.ndarray, np.ndarray]:
        """(labels as text, image paths) of the demo NPZ the app wrote into its cache folder."""
        files = sorted((self.cache_dir / "demo").glob("*.npz"))
        assert files, f"the app wrote no demo NPZ under {self.cache_dir / 'demo'}"
        with np.load(files[-1], allow_pickle=False) as z:
            return z["labels"].astype(str), z["image_paths"].astype(str)


# ---------------------------------------------------------------- server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
            return resp.read().decode().strip() == "ok"
    except OSError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the group we created: streamlit and nothing else
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
    except ProcessLookupError:
        pass


@contextlib.contextmanager
def streamlit_server(port: int, env: dict[str, str], log_path: Path, *extra_args: str) -> Iterator[str]:
    """`streamlit run streamlit_app.py` on 127.0.0.1:port in its own process group until it answers; its URL."""
    from .helpers import streamlit_command

    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            streamlit_command("streamlit_app.py", port, *extra_args),
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        started = time.monotonic()
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() - started > STARTUP_TIMEOUT_S:
                tail = log_path.read_text(errors="replace")[-3000:]
                why = (
                    f"exited with {proc.returncode}"
                    if proc.poll() is not None
                    else f"not healthy after {STARTUP_TIMEOUT_S} s"
                )
                pytest.fail(f"streamlit server {why}; log tail:\n{tail}", pytrace=False)
            time.sleep(0.5)
        print(f"\n[e2e] server {url} healthy after {time.monotonic() - started:.1f} s; log {log_path}")
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def app_server():
    from .helpers import CHROMIUM

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (Debian package 'chromium'): browser tests need it")
    work = Path(tempfile.mkdtemp(prefix="cleaner-e2e-"))
    cache_dir, allowed = work / "cache", work / "allowed"
    cache_dir.mkdir()
    allowed.mkdir()
    small = _write_small_dataset(allowed)
    artifacts = _artifacts()
    artifacts.mkdir(parents=True, exist_ok=True)
    for old in artifacts.glob("*.png"):  # screenshots of an earlier run would mislead
        old.unlink()
    log_path = artifacts / "server.log"
    port = _free_port()
    env = {"CLEANER_CACHE_DIR": str(cache_dir), "CLEANER_ALLOWED_ROOTS": str(allowed)}
    try:
        with streamlit_server(port, env, log_path) as url:
            yield AppServer(url=url, cache_dir=cache_dir, allowed_root=allowed, small=small, log=log_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- browser


@pytest.fixture(scope="session")
def chromium_browser():
    """One Playwright and one Chromium for the whole run: Playwright's sync API allows one at a time per thread."""
    from playwright.sync_api import sync_playwright

    from .helpers import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def browser(app_server, chromium_browser):
    """The browser for the tests of the open app (starts that app's server first)."""
    return chromium_browser


@pytest.fixture
def new_context(browser, request):
    """Factory of fresh browser contexts (own cookies, own Streamlit session); screenshots pages on failure."""
    from playwright.sync_api import expect

    from .helpers import VIEWPORT, screenshot

    expect.set_options(timeout=60_000)
    contexts = []

    def make():
        ctx = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        ctx.set_default_timeout(60_000)
        contexts.append(ctx)
        return ctx

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for i, ctx in enumerate(contexts):
        if failed:
            for j, page in enumerate(ctx.pages):
                try:
                    print(f"[e2e] failure screenshot: {screenshot(page, f'FAILED_{request.node.name}_{i}_{j}')}")
                except Exception as exc:  # a hung page must not hide the real failure
                    print(f"[e2e] no failure screenshot: {exc}")
        ctx.close()


@pytest.fixture
def page(new_context):
    return new_context().new_page()
