"""Keyed background jobs and the recent-results memory (cleaner/server/jobs.py), on real threads."""

import threading

import pytest

from cleaner.server import jobs
from cleaner.server.jobs import Jobs, JobStatus, Recent

WAIT_S = 60  # only a bound against a hang: no test waits for it to pass


class Gate:
    """A job that counts its runs and, until opened, blocks."""

    def __init__(self):
        self.runs = 0
        self.started = threading.Event()
        self.opened = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, value=None):
        with self._lock:
            self.runs += 1
        self.started.set()
        assert self.opened.wait(WAIT_S)
        return value


def test_a_key_runs_once_however_many_threads_ask_at_once():
    pool = Jobs(4, "test-jobs")
    gate = Gate()
    barrier = threading.Barrier(16)

    def ask() -> None:
        barrier.wait(WAIT_S)
        pool.start("key", gate)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    gate.opened.set()
    pool.wait("key", WAIT_S)
    assert gate.runs == 1 and pool.started == 1
    assert pool.status("key").state == "ready"
    pool.start("key", gate)  # a job done well is not run again
    assert gate.runs == 1 and pool.started == 1


def test_each_key_runs_its_own_job_with_its_arguments():
    pool = Jobs(2, "test-jobs")
    seen: list = []
    lock = threading.Lock()

    def record(*args) -> None:
        with lock:
            seen.append(args)

    for key in range(5):
        pool.start(key, record, key, f"value {key}")
    for key in range(5):
        pool.wait(key, WAIT_S)
    assert sorted(seen) == [(key, f"value {key}") for key in range(5)]
    assert pool.started == 5


def test_status_says_running_queued_ready_or_missing():
    pool = Jobs(1, "test-jobs")
    first, second = Gate(), Gate()
    second.opened.set()
    assert pool.status("a") == JobStatus("missing")
    pool.start("a", first)
    assert first.started.wait(WAIT_S)
    pool.start("b", second)  # the only worker is busy with "a"
    assert pool.status("a").state == "running"
    assert pool.status("b").state == "queued" and second.runs == 0
    assert pool.status("a").elapsed_s >= 0
    first.opened.set()
    pool.wait("a", WAIT_S)
    pool.wait("b", WAIT_S)
    assert pool.status("a").state == pool.status("b").state == "ready"
    assert second.runs == 1


def test_waiting_for_no_job_returns_and_a_timeout_is_raised():
    pool = Jobs(1, "test-jobs")
    pool.wait("nothing")  # at once, no error
    gate = Gate()
    pool.start("slow", gate)
    with pytest.raises(TimeoutError):
        pool.wait("slow", timeout=0.01)
    gate.opened.set()
    pool.wait("slow", WAIT_S)


def test_a_failure_is_reported_raised_and_not_retried_at_once(monkeypatch):
    pool = Jobs(1, "test-jobs")
    runs = []

    def fail() -> None:
        runs.append(1)
        raise ValueError("no such file")

    pool.start("key", fail)
    with pytest.raises(ValueError, match="no such file") as raised:
        pool.wait("key", WAIT_S)
    assert raised.value.__traceback__ is not None  # raised again here, with this frame's traceback
    status = pool.status("key")
    assert status.state == "failed" and status.error == "ValueError: no such file"
    pool.start("key", fail)  # a failed job is not restarted by every rerun of the page
    assert len(runs) == 1 and pool.started == 1
    monkeypatch.setattr(jobs, "RETRY_FAILED_AFTER_S", -1.0)  # ... only once it failed long enough ago
    pool.start("key", fail)
    with pytest.raises(ValueError):
        pool.wait("key", WAIT_S)
    assert len(runs) == 2 and pool.started == 2


def test_a_failed_jobs_traceback_is_dropped_so_it_pins_no_frames():
    pool = Jobs(1, "test-jobs")

    def fail() -> None:
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise RuntimeError("outer") from exc

    pool.start("key", fail)
    with pytest.raises(RuntimeError) as raised:
        pool.wait("key", WAIT_S)
    chain = [raised.value, raised.value.__cause__]
    assert isinstance(chain[1], KeyError)
    # Each raise in wait() adds the waiting frame again; the job's own frames are gone.
    for link in chain:
        frames = []
        tb = link.__traceback__
        while tb is not None:
            frames.append(tb.tb_frame.f_code.co_name)
            tb = tb.tb_next
        assert "fail" not in frames


def test_a_job_done_well_runs_again_once_its_result_is_lost():
    pool = Jobs(1, "test-jobs")
    gate = Gate()
    gate.opened.set()
    pool.start("key", gate)
    pool.wait("key", WAIT_S)
    pool.forget_if_lost("key", lambda: True)  # the result is still there: nothing to do
    assert pool.status("key").state == "ready"
    pool.forget_if_lost("key", lambda: False)  # dropped from memory and disk since
    assert pool.status("key").state == "missing"
    pool.start("key", gate)
    pool.wait("key", WAIT_S)
    assert gate.runs == 2 and pool.started == 2


def test_a_running_queued_or_failed_job_is_never_forgotten():
    pool = Jobs(1, "test-jobs")
    running, queued = Gate(), Gate()
    queued.opened.set()
    pool.start("running", running)
    assert running.started.wait(WAIT_S)
    pool.start("queued", queued)
    looked = []
    for key in ("running", "queued"):
        pool.forget_if_lost(key, lambda: looked.append(1) or False)
    assert pool.status("running").state == "running" and pool.status("queued").state == "queued"
    assert looked == []  # not even looked for while the job is on its way
    running.opened.set()
    pool.wait("queued", WAIT_S)

    def fail() -> None:
        raise OSError("disk full")

    pool.start("failed", fail)
    with pytest.raises(OSError):
        pool.wait("failed", WAIT_S)
    pool.forget_if_lost("failed", lambda: False)
    assert pool.status("failed").state == "failed"


def test_recent_drops_the_oldest_beyond_its_size():
    recent = Recent(3)
    for key in "abcd":
        recent.put(key, key.upper())
    assert "a" not in recent and recent.get("a") is None
    assert [recent.get(key) for key in "bcd"] == ["B", "C", "D"]


def test_recent_keeps_what_was_used_last():
    recent = Recent(2)
    recent.put("a", 1)
    recent.put("b", 2)
    assert recent.get("a") == 1  # "a" used: "b" is now the oldest
    recent.put("c", 3)
    assert "b" not in recent and "a" in recent and "c" in recent
    recent.put("a", 10)  # put again: replaced, and newest
    recent.put("d", 4)
    assert "c" not in recent and recent.get("a") == 10 and recent.get("d") == 4


def test_recent_stays_within_its_size_under_concurrent_use():
    recent = Recent(5)
    barrier = threading.Barrier(8)

    def work(thread: int) -> None:
        barrier.wait(WAIT_S)
        for i in range(500):
            recent.put((thread, i), i)
            recent.get((thread, i - 1))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert sum((t, i) in recent for t in range(8) for i in range(500)) == 5
    assert sum((t, 499) in recent for t in range(8)) >= 1  # the last puts are among the kept
