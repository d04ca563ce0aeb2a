"""Keyed background jobs shared by every session: one computation per key however many pages ask for it."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

RETRY_FAILED_AFTER_S = 60.0  # a failed job is not started again for this long: every rerun would restart it


@dataclass(frozen=True)
class JobStatus:
    state: str  # "ready", "running", "queued", "failed" or "missing"
    elapsed_s: float = 0.0
    error: str = ""


class Jobs:
    """Worker threads running at most one job per key; each job's state readable by any session."""

    def __init__(self, workers: int, name: str):
        self._jobs: dict[Hashable, tuple[Future, float]] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self.started = 0  # jobs started so far (tests and benchmarks count computations with it)

    def start(self, key: Hashable, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn(*args) for key unless a run is queued, running or done; a failed run is retried after a while."""
        with self._lock:
            job = self._jobs.get(key)
            failed_long_ago = (
                job is not None
                and job[0].done()
                and job[0].exception() is not None
                and time.time() - job[1] > RETRY_FAILED_AFTER_S
            )
            if job is None or failed_long_ago:
                future = self._executor.submit(fn, *args)
                future.add_done_callback(_drop_traceback)
                self._jobs[key] = (future, time.time())
                self.started += 1

    def forget_if_lost(self, key: Hashable, found: Callable[[], bool]) -> None:
        """Let a job that ended well run again once its result can no longer be `found` (dropped from memory and from
        the disk store since): a job remembered as done is never started again. The result is looked for after the
        job is seen done, so one stored as the job ended is found. A queued, running or failed job stays."""
        if self.status(key).state != "ready" or found():
            return
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job[0].done() and job[0].exception() is None:
                del self._jobs[key]

    def status(self, key: Hashable) -> JobStatus:
        with self._lock:
            job = self._jobs.get(key)
        if job is None:
            return JobStatus("missing")
        future, started = job
        elapsed = time.time() - started
        if not future.done():
            return JobStatus("running" if future.running() else "queued", elapsed)
        if future.exception() is not None:
            return JobStatus("failed", elapsed, f"{type(future.exception()).__name__}: {future.exception()}")
        return JobStatus("ready", elapsed)

    def wait(self, key: Hashable, timeout: float | None = None) -> None:
        """Until the job ends (its exception raised here); at once when there is none."""
        with self._lock:
            job = self._jobs.get(key)
        if job is not None:
            job[0].result(timeout=timeout)


def _drop_traceback(future: Future) -> None:
    """A failed job's exception is kept for the page to show; its traceback would pin the job's frames, and with them
    the embeddings and graph of a session that may be gone."""
    exc, seen = future.exception(), set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__


class Recent:
    """The most recently used results by key, thread-safe; the oldest dropped beyond `entries`."""

    def __init__(self, entries: int):
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._entries = entries
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._entries:
                self._items.popitem(last=False)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items
