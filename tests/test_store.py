"""The decision store (cleaner/decisions/store.py): the same tests against SQLite and a real PostgreSQL server.

The PostgreSQL runs come from tests/pg_fixture.py (a throwaway cluster); where it cannot start they are skipped
with the reason.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from cleaner.decisions.records import AuditVerdict, Decision
from cleaner.decisions.store import (
    SCHEMA_VERSION,
    TEAM_SPACE,
    DecisionStore,
    Event,
    Ledger,
    StoreError,
    audit_event,
    decision_event,
    find_conflicts,
    hide_password,
    paths_identity,
    schema_table,
    token_space,
)

from .pg_fixture import postgres_cluster  # noqa: F401  (the session fixture)

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "pw-Secret-93xq"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'decisions.sqlite3'}"
    cluster = request.getfixturevalue("postgres_cluster")
    return cluster.new_database()


@pytest.fixture
def store(store_url):
    s = DecisionStore(store_url)
    yield s
    s.close()


def ex(path: str, who: str = "ann@team.example", **kw) -> Event:
    return Event(path, "exclude", who, **kw)


def paths(n: int, prefix: str = "/data/img") -> np.ndarray:
    return np.array([f"{prefix}_{i:05d}.png" for i in range(n)])


def _at_once(work, n: int = 10, timeout: float = 600) -> list[BaseException]:
    """Run work(i) for i in range(n) on n threads that start together; the exceptions they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as exc:  # noqa: BLE001  (returned, with the thread's own traceback)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    return errors


# ---------------------------------------------------------------- schema


def test_schema_is_created_with_its_version_and_reopening_keeps_the_events(store_url):
    first = DecisionStore(store_url)
    assert first.schema_version() == SCHEMA_VERSION
    first.append(TEAM_SPACE, [ex("/a.png")])
    first.close()
    again = DecisionStore(store_url)  # a restart: nothing created twice, nothing lost
    assert again.schema_version() == SCHEMA_VERSION
    assert list(again.current(TEAM_SPACE, ["/a.png"]).decisions) == ["/a.png"]
    again.close()


def test_a_database_from_a_newer_cleaner_is_refused(store):
    with store.engine.begin() as conn:
        conn.execute(schema_table.update().values(version=SCHEMA_VERSION + 1))
    with pytest.raises(StoreError, match="newer cleaner"):
        DecisionStore(store.engine.url.render_as_string(hide_password=False))


# ---------------------------------------------------------------- events and the derived state


def test_the_latest_event_wins_and_undo_is_an_event(store):
    store.append(TEAM_SPACE, [ex("/a.png"), Event("/b.png", "keep", "bob@crew.example")])
    store.append(TEAM_SPACE, [Event("/a.png", "relabel", "bob@crew.example", new_label="cat", old_label="dog")])
    current = store.current(TEAM_SPACE, ["/a.png", "/b.png", "/c.png"])
    assert {p: (e.kind, e.new_label, e.decided_by) for p, e in current.decisions.items()} == {
        "/a.png": ("relabel", "cat", "bob@crew.example"),
        "/b.png": ("keep", "", "bob@crew.example"),
    }
    store.append(TEAM_SPACE, [Event("/a.png", "undo", "ann@team.example")])
    assert list(store.current(TEAM_SPACE, ["/a.png", "/b.png"]).decisions) == ["/b.png"]
    history = store.history(TEAM_SPACE, "/a.png")  # nothing is lost: the undo is one more event
    assert [(e.kind, e.decided_by) for e in history] == [
        ("exclude", "ann@team.example"),
        ("relabel", "bob@crew.example"),
        ("undo", "ann@team.example"),
    ]
    assert [e.seq for e in history] == sorted(e.seq for e in history)


def test_audit_verdicts_are_a_stream_of_their_own(store):
    store.append(
        TEAM_SPACE,
        [
            decision_event("/a.png", Decision("relabel", new_label="cat", source="audit"), "ann"),
            audit_event("/a.png", AuditVerdict("relabel", "cat"), "ann"),
        ],
    )
    store.append(TEAM_SPACE, [decision_event("/a.png", None, "ann")])  # the decision taken back, not the verdict
    current = store.current(TEAM_SPACE, ["/a.png"])
    assert current.decisions == {}
    assert current.audit["/a.png"].verdict() == AuditVerdict("relabel", "cat")


def test_spaces_do_not_see_each_other(store):
    mine = token_space("A" * 16)
    assert "A" * 16 not in mine  # the token itself is never stored
    store.append(mine, [ex("/a.png", who="token")])
    assert store.current(TEAM_SPACE, ["/a.png"]).decisions == {}
    assert store.current(token_space("B" * 16), ["/a.png"]).decisions == {}
    assert list(store.current(mine, ["/a.png"]).decisions) == ["/a.png"]


def test_hostile_text_is_data_not_sql(store):
    nasty = "/data/'; DROP TABLE events; --\"\\%_\u00e9\U0001f600.png"
    label = "x'); DELETE FROM spaces; --"
    store.append(TEAM_SPACE, [Event(nasty, "relabel", "o'brien@team.example", new_label=label, reason="%s %(x)s ?")])
    got = store.current(TEAM_SPACE, [nasty]).decisions[nasty]
    assert (got.new_label, got.decided_by, got.reason) == (label, "o'brien@team.example", "%s %(x)s ?")
    assert store.head(TEAM_SPACE) == 1


def test_long_paths_are_kept_whole(store):
    long = "/data/" + "d" * 4000 + ".png"  # longer than a PostgreSQL index entry may be
    store.append(TEAM_SPACE, [ex(long)])
    assert list(store.current(TEAM_SPACE, [long]).decisions) == [long]


def test_a_retried_write_is_not_doubled(store):
    event = ex("/a.png")
    assert len(store.append(TEAM_SPACE, [event])) == 1
    assert store.append(TEAM_SPACE, [event]) == []  # its answer was lost, so the session sent it again
    assert len(store.history(TEAM_SPACE, "/a.png")) == 1


def test_events_since_brings_exactly_what_came_after(store):
    store.append(TEAM_SPACE, [ex("/a.png"), ex("/b.png")])
    seen = store.head(TEAM_SPACE)
    store.append(TEAM_SPACE, [ex("/c.png", who="bob@crew.example")])
    later = store.events_since(TEAM_SPACE, seen)
    assert [(e.path, e.decided_by) for e in later] == [("/c.png", "bob@crew.example")]


# ---------------------------------------------------------------- decisions belong to the images


def test_dataset_identity_is_the_paths_alone():
    p = paths(50)
    assert paths_identity(p) == paths_identity(p[::-1].tolist())  # rows in another order: the same images
    assert paths_identity(p) != paths_identity(p[:-1])


def test_a_new_version_of_a_dataset_gets_its_earlier_decisions(store_url):
    """Decided on 100 images; the next NPZ (another model) drops 10 of them and adds 20 new ones."""
    store = DecisionStore(store_url)
    old = paths(100)
    first = Ledger(lambda: store, TEAM_SPACE, "ann@team.example", paths_identity(old), "v1", len(old))
    assert first.open(old).decisions == {}
    first.record([ex(str(p)) for p in old[:30]] + [Event(str(old[95]), "keep", "ann@team.example")])
    new = np.concatenate([old[10:], paths(20, "/data/new")])
    second = Ledger(lambda: store, TEAM_SPACE, "bob@crew.example", paths_identity(new), "v2", len(new))
    applied = second.open(new)
    assert set(applied.decisions) == {str(p) for p in old[10:30]} | {str(old[95])}
    assert applied.decisions[str(old[95])].kind == "keep"
    assert applied.from_earlier == 21 and applied.left_out == 10
    assert first.dataset_id != second.dataset_id
    # The same images re-embedded (another NPZ, rows shuffled): the same dataset, nothing "from earlier".
    again = Ledger(lambda: store, TEAM_SPACE, "ann@team.example", paths_identity(old[::-1]), "v1b", len(old))
    applied = again.open(old[::-1])
    assert len(applied.decisions) == 31 and applied.from_earlier == 0 and again.dataset_id == first.dataset_id
    store.close()


# ---------------------------------------------------------------- concurrency


def test_ten_sessions_deciding_at_once_lose_nothing_and_cross_no_attribution(store_url):
    store = DecisionStore(store_url)
    images = paths(200)
    identity = paths_identity(images)
    per_session = 40

    def session(i: int) -> None:
        who = f"user{i}@team.example"
        ledger = Ledger(lambda: store, TEAM_SPACE, who, identity, "shared", len(images))
        ledger.open(images)
        for j in range(per_session):
            path = str(images[(i * 7 + j * 3) % len(images)])  # sessions overlap on many images
            assert ledger.record([Event(path, "exclude" if (i + j) % 2 else "keep", who, reason=f"s{i} d{j}")])
            ledger.pull()

    errors = _at_once(session)
    assert not errors, errors
    everything = store.events_since(TEAM_SPACE, 0)
    assert len(everything) == 10 * per_session  # nothing lost
    assert [e.seq for e in everything] == list(range(1, 10 * per_session + 1))  # numbered without gaps
    for e in everything:  # nothing crossed: each event is its session's, with its own reason
        i = int(e.reason.split()[0][1:])
        assert e.decided_by == f"user{i}@team.example"
    current = store.current(TEAM_SPACE, images)
    for path, e in current.decisions.items():  # the current decision is each image's latest event
        assert e.uid == max((x for x in everything if x.path == path), key=lambda x: x.seq).uid
    store.close()


def test_another_server_process_sees_the_same_decisions(store_url):
    """Two app servers on one database (behind one load balancer): one writes, the other reads."""
    store = DecisionStore(store_url)
    code = (
        "import sys; from cleaner.decisions.store import DecisionStore, Event, TEAM_SPACE;"
        "s = DecisionStore(sys.argv[1]); s.append(TEAM_SPACE, [Event('/x.png', 'exclude', 'bob@crew.example')])"
    )
    subprocess.run([sys.executable, "-c", code, store_url], check=True, cwd=REPO, timeout=120)
    assert store.current(TEAM_SPACE, ["/x.png"]).decisions["/x.png"].decided_by == "bob@crew.example"
    store.close()


_WRITER = """
import sys
from cleaner.decisions.store import DecisionStore, Event, TEAM_SPACE
store = DecisionStore(sys.argv[1])
i = 0
while True:
    store.append(TEAM_SPACE, [Event(f"/img/{i}.png", "exclude", "ann@team.example")])
    print(i, flush=True)  # acknowledged: written and committed
    i += 1
"""


def test_a_server_killed_mid_decision_keeps_every_acknowledged_decision(store_url):
    DecisionStore(store_url).close()  # the schema first, so the writer starts deciding at once
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, store_url], cwd=REPO, stdout=subprocess.PIPE, text=True)
    acked = -1
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            acked = int(line)
            if acked >= 30:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    store = DecisionStore(store_url)  # "started again"
    current = store.current(TEAM_SPACE, [f"/img/{i}.png" for i in range(acked + 50)])
    assert all(f"/img/{i}.png" in current.decisions for i in range(acked + 1))
    store.close()


# ---------------------------------------------------------------- conflicts


def test_conflicts_are_disagreements_since_the_last_settle(store):
    ann, bob, cat = "ann@team.example", "bob@crew.example", "cat@crew.example"
    store.append(
        TEAM_SPACE,
        [
            Event("/a.png", "exclude", ann),
            Event("/a.png", "keep", bob),  # exclude against keep
            Event("/b.png", "relabel", ann, new_label="cat"),
            Event("/b.png", "relabel", bob, new_label="dog"),
            Event("/c.png", "relabel", ann, new_label="cat"),
            Event("/c.png", "relabel", bob, new_label="cat"),  # agree
            Event("/d.png", "exclude", ann),
            Event("/d.png", "keep", bob),
            Event("/d.png", "undo", bob),  # taken back
            Event("/e.png", "exclude", ann),
            Event("/e.png", "keep", ann),  # one person changing their mind
        ],
    )
    found = {c.path: c for c in store.conflicts(TEAM_SPACE, ["/a.png", "/b.png", "/c.png", "/d.png", "/e.png"])}
    assert set(found) == {"/a.png", "/b.png"}
    assert [(e.decided_by, e.kind) for e in found["/a.png"].by_person] == [(ann, "exclude"), (bob, "keep")]
    assert found["/a.png"].current.kind == "keep"  # the latest event is what the image has now
    store.append(TEAM_SPACE, [Event("/a.png", "exclude", cat, settles=True)])  # settled in one click
    assert {c.path for c in store.conflicts(TEAM_SPACE, ["/a.png", "/b.png"])} == {"/b.png"}
    store.append(TEAM_SPACE, [Event("/a.png", "keep", bob)])  # a new disagreement after the settle
    assert {c.path for c in store.conflicts(TEAM_SPACE, ["/a.png"])} == {"/a.png"}


def test_find_conflicts_needs_no_database():
    events = [Event("/a.png", "exclude", "x", seq=1), Event("/a.png", "keep", "y", seq=2)]
    assert [c.path for c in find_conflicts(events)] == ["/a.png"]


# ---------------------------------------------------------------- faults


def _unreachable(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("a file where the folder should be")
        return f"sqlite:///{blocker / 'decisions.sqlite3'}"
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    return f"postgresql+psycopg://cleaner:{PASSWORD}@127.0.0.1:{port}/decisions"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_an_unreachable_database_gives_a_clear_message_without_the_password(kind, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreError) as info:
        DecisionStore(_unreachable(kind, tmp_path))
    text = str(info.value)
    assert "could not prepare decisions" in text
    assert PASSWORD not in text and PASSWORD not in caplog.text
    assert (
        info.value.__cause__ is None and info.value.__context__ is None or PASSWORD not in repr(info.value.__context__)
    )
    if kind == "postgresql":
        assert "cannot be reached" in text and "***" in text


def test_the_password_is_never_shown(request, caplog):
    cluster = request.getfixturevalue("postgres_cluster")
    caplog.set_level(logging.DEBUG)
    url = cluster.url(password=PASSWORD)  # trust authentication: the password is not even needed
    store = DecisionStore(url)
    assert PASSWORD not in store.shown_url and "***" in store.shown_url
    assert PASSWORD not in hide_password(url)
    store.append(TEAM_SPACE, [ex("/a.png")])
    cluster.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = 'postgres'"
    )
    store.append(TEAM_SPACE, [ex("/b.png")])  # the pool's dead connections are replaced, quietly
    assert PASSWORD not in caplog.text
    store.close()


def _read_only(kind: str, url: str, cluster) -> str:
    """The same database, opened read-only."""
    if kind == "sqlite":
        path = url.removeprefix("sqlite:///")
        return f"sqlite:///file:{path}?mode=ro&uri=true"
    database = url.rsplit("/", 1)[1]
    cluster.sql(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    return url


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_read_only_database_says_so_and_the_session_writes_through_once_it_is_back(kind, tmp_path, request):
    cluster = request.getfixturevalue("postgres_cluster") if kind == "postgresql" else None
    url = f"sqlite:///{tmp_path / 'd.sqlite3'}" if kind == "sqlite" else cluster.new_database()
    writable = DecisionStore(url)  # the schema exists; then the database becomes read-only
    read_only = DecisionStore(_read_only(kind, url, cluster))
    now_using = [read_only]
    ledger = Ledger(lambda: now_using[0], TEAM_SPACE, "ann@team.example", "id" * 32, "ds", 10)
    assert not ledger.record([ex("/a.png")], now=1000.0)
    assert "read-only" in ledger.error and "could not save decisions" in ledger.error
    assert not ledger.record([ex("/b.png")], now=1001.0)  # not tried again at once: it waits, in order
    assert [e.path for e in ledger.pending] == ["/a.png", "/b.png"]
    if kind == "postgresql":
        database = url.rsplit("/", 1)[1]
        cluster.sql(f'ALTER DATABASE "{database}" SET default_transaction_read_only = off')
        writable.engine.dispose()  # connections made while it was read-only keep that setting
    now_using[0] = writable  # the database is back
    assert ledger.flush()
    assert ledger.error == "" and ledger.pending == []
    assert [e.path for e in writable.events_since(TEAM_SPACE, 0)] == ["/a.png", "/b.png"]
    read_only.close()
    writable.close()


def test_a_store_that_cannot_open_leaves_the_session_working(tmp_path):
    """Unreachable from the start: the ledger keeps the decisions and writes them once a store opens."""
    url = _unreachable("sqlite", tmp_path)
    target = [url]
    ledger = Ledger(lambda: DecisionStore(target[0]), TEAM_SPACE, "ann", "id" * 32, "ds", 3)
    with pytest.raises(StoreError, match="could not prepare"):
        ledger.open(paths(3))
    assert not ledger.record([ex("/a.png", who="ann")], now=0.0)
    assert ledger.error and ledger.pending
    target[0] = f"sqlite:///{tmp_path / 'ok.sqlite3'}"
    assert ledger.flush() and not ledger.pending
    assert list(DecisionStore(target[0]).current(TEAM_SPACE, ["/a.png"]).decisions) == ["/a.png"]


def test_a_bad_url_is_refused_in_words():
    with pytest.raises(StoreError, match="not a database URL"):
        DecisionStore("no url at all")
    with pytest.raises(StoreError, match="SQLite or PostgreSQL"):
        DecisionStore(f"mysql://u:{PASSWORD}@h/db")
    try:
        DecisionStore(f"mysql://u:{PASSWORD}@h/db")
    except StoreError as exc:
        assert PASSWORD not in str(exc)


def test_size_is_reported(store):
    store.append(TEAM_SPACE, [ex(f"/p{i}.png") for i in range(100)])
    assert store.size_bytes() > 0


def test_a_teammates_earlier_event_does_not_override_my_later_one(store):
    ann = Ledger(lambda: store, TEAM_SPACE, "ann", "id" * 32, "ds", 1)
    bob = Ledger(lambda: store, TEAM_SPACE, "bob", "id" * 32, "ds", 1)
    ann.open(["/a.png", "/b.png"])
    bob.open(["/a.png", "/b.png"])
    ann.record([Event("/a.png", "exclude", "ann"), Event("/b.png", "exclude", "ann")])
    bob.record([Event("/a.png", "keep", "bob")])  # after Ann's, before Bob looked: Bob's is the latest
    assert [(e.path, e.decided_by) for e in bob.others()] == [("/b.png", "ann")]
    assert [(e.path, e.kind) for e in ann.others()] == [("/a.png", "keep")]


def test_many_writes_from_one_ledger_keep_their_order(store):
    ledger = Ledger(lambda: store, TEAM_SPACE, "ann", "id" * 32, "ds", 1)
    for kind in ("exclude", "keep", "undo", "relabel"):
        ledger.record([Event("/a.png", kind, "ann", new_label="cat" if kind == "relabel" else "")])
    assert [e.kind for e in store.history(TEAM_SPACE, "/a.png")] == ["exclude", "keep", "undo", "relabel"]


# ---------------------------------------------------------------- claims: teammates are shown different images


def test_a_session_holds_what_it_shows_and_a_teammate_gets_the_rest(store):
    images = [str(p) for p in paths(8)]
    ann, bob = ("ann-session", "ann@team.example"), ("bob-session", "bob@crew.example")
    assert store.hold(TEAM_SPACE, images[:4], *ann, now=1000.0) == set(images[:4])
    # Bob's queue asks for images 2-5: Ann holds 2 and 3, so Bob gets 4 and 5 only.
    assert store.hold(TEAM_SPACE, images[2:6], *bob, now=1001.0) == set(images[4:6])
    assert store.held_by_others(TEAM_SPACE, bob[1], now=1002.0) == dict.fromkeys(images[:4], ann[1])
    assert store.held_by_others(TEAM_SPACE, ann[1], now=1002.0) == dict.fromkeys(images[4:6], bob[1])
    # Renewing: Ann shows 0, 1 and 6 now; she lets go of 2 and 3, which Bob can then hold.
    assert store.hold(TEAM_SPACE, [images[0], images[1], images[6]], *ann, now=1010.0) == {
        images[0],
        images[1],
        images[6],
    }
    assert set(store.held_by_others(TEAM_SPACE, bob[1], now=1011.0)) == {images[0], images[1], images[6]}
    assert store.hold(TEAM_SPACE, images[2:6], *bob, now=1012.0) == set(images[2:6])
    assert store.held_by_others(TEAM_SPACE, "cy@team.example", now=1013.0) == {
        **dict.fromkeys([images[0], images[1], images[6]], ann[1]),
        **dict.fromkeys(images[2:6], bob[1]),
    }
    # A page that shows no card lets go of everything it held.
    assert store.hold(TEAM_SPACE, [], *ann, now=1014.0) == set()
    assert store.held_by_others(TEAM_SPACE, "cy@team.example", now=1015.0) == dict.fromkeys(images[2:6], bob[1])


def test_a_claim_lapses_when_it_is_not_renewed(store):
    images = [str(p) for p in paths(3)]
    store.hold(TEAM_SPACE, images, "ann-session", "ann@team.example", now=1000.0, hold_s=60.0)
    assert len(store.held_by_others(TEAM_SPACE, "bob@crew.example", now=1059.0)) == 3
    assert store.held_by_others(TEAM_SPACE, "bob@crew.example", now=1061.0) == {}  # Ann closed her tab a minute ago
    assert store.hold(TEAM_SPACE, images, "bob-session", "bob@crew.example", now=1061.0) == set(images)


def test_claims_are_per_space_and_a_persons_own_tabs_share_them(store):
    image, other = "/data/one.png", "/data/two.png"
    store.hold(TEAM_SPACE, [image, other], "tab-1", "ann@team.example", now=1000.0)
    # Ann reloads (a new browser session): her earlier session's cards are still hers, never hidden from her.
    assert store.held_by_others(TEAM_SPACE, "ann@team.example", now=1001.0) == {}
    assert store.hold(TEAM_SPACE, [image], "tab-2", "ann@team.example", now=1001.0) == {image}
    assert store.held_by_others(TEAM_SPACE, "bob@crew.example", now=1002.0) == dict.fromkeys(
        [image, other], "ann@team.example"
    )
    assert store.hold(token_space("t" * 43), [image], "tab-3", "token abc", now=1001.0) == {image}


def test_ten_sessions_claiming_one_queue_at_once_never_hold_an_image_twice(store_url):
    store = DecisionStore(store_url)
    images = [str(p) for p in paths(40)]
    held: dict[int, set[str]] = {}

    def reviewer(i: int) -> None:
        who = f"user{i}@team.example"
        for _ in range(5):  # every session asks for the queue's top cards it is not shown held by others
            others = store.held_by_others(TEAM_SPACE, who)
            wanted = [p for p in images if p not in others][:4]
            held[i] = store.hold(TEAM_SPACE, wanted, f"s{i}", who)

    errors = _at_once(reviewer, timeout=300)
    store.close()
    assert not errors, errors
    everything = [p for found in held.values() for p in found]
    assert len(everything) == len(set(everything))  # no image held by two sessions
    assert sum(1 for found in held.values() if found) >= 5  # and most sessions got cards of their own


def test_a_schema_1_database_gains_the_claims_table_and_keeps_its_events(store_url):
    import sqlalchemy as sa

    from cleaner.decisions.store import claims_table

    first = DecisionStore(store_url)
    first.append(TEAM_SPACE, [ex("/a.png")])
    with first.engine.begin() as conn:  # what cleaner's first schema had: no claims
        claims_table.drop(conn)
        conn.execute(schema_table.update().values(version=1))
    first.close()
    again = DecisionStore(store_url)
    assert again.schema_version() == SCHEMA_VERSION == 2
    assert sa.inspect(again.engine).has_table("claims")
    assert list(again.current(TEAM_SPACE, ["/a.png"]).decisions) == ["/a.png"]
    assert again.hold(TEAM_SPACE, ["/a.png"], "s", "ann@team.example") == {"/a.png"}
    again.close()
