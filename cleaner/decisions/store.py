"""The decision store: every decision as an append-only event in a real database, the current one derived.

SQLite under the cache folder by default (WAL, nothing to set up); PostgreSQL when `CLEANER_DATABASE_URL` names one
(several app servers then share it). One code path for both: SQLAlchemy 2 Core, bound parameters only.

- **Spaces.** Events belong to a space: `team` (everyone signed in on this server shares it) or one token's own
  space (`token:` + a hash of the token: the token itself is never stored). A space's events are numbered by a
  counter kept in the `spaces` table and taken under that row's lock, so numbers follow commit order: a reader
  that has seen number N has seen every event before it (what `events_since` relies on).
- **Images, not embeddings.** An event names the image by its path; a dataset is known by a digest of its sorted
  paths (`paths_identity`) and recorded with each event only to say which version of the dataset it was made in.
  The same images in another NPZ (another model, more rows, fewer rows) find their decisions by path.
- **Derived state.** The current decision of an image is its latest event (an `undo` event clears it); the
  random audit's verdicts are a second stream beside the decisions. Nothing is ever updated or deleted.
- **Claims.** In a shared space, the images on a reviewer's queue cards are held for that browser session for a
  couple of minutes (`claims`, one row per image, renewed while the cards are shown), so teammates working one
  queue are shown different suspects (a person's own tabs share theirs). A claim is a courtesy, not a lock:
  decisions never look at it.
- **Faults.** Every database error becomes a `StoreError` whose message a person can read and which never holds
  the URL's password; `Ledger` (one per session and dataset) keeps what could not be written and writes it once
  the database is back.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from cleaner.decisions.records import AuditVerdict, Decision, Decisions
from cleaner.server.errors import CleanerError

SCHEMA_VERSION = 2
DATABASE_FILE = "decisions.sqlite3"
TEAM_SPACE = "team"
EVENT_KINDS = ("exclude", "keep", "relabel", "undo")
STREAMS = ("decision", "audit")
CLAIM_S = 120.0  # how long shown cards stay held for their session after it last showed them
CONNECT_TIMEOUT_S = 5  # an unreachable server fails a write this fast, not after minutes
RETRY_AFTER_S = 10.0  # after a failed write, a session waits this long before trying again by itself
_KEY_CHUNK = 500  # bound parameters per IN (...) list: well under SQLite's limit
_SQLITE_BUSY_MS = 30_000  # a writer waits this long for another's commit before giving up


class StoreError(CleanerError):
    """The decision database cannot be used right now; the message says why, in words for people."""


# ---------------------------------------------------------------- the schema

metadata = sa.MetaData()

schema_table = sa.Table(
    "cleaner_schema",
    metadata,
    sa.Column("version", sa.Integer, nullable=False),
)

datasets_table = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("identity", sa.String(64), nullable=False, unique=True),  # digest of the sorted image paths
    sa.Column("name", sa.Text, nullable=False, default=""),
    sa.Column("n_images", sa.Integer, nullable=False),
    sa.Column("first_seen", sa.Float, nullable=False),
)

spaces_table = sa.Table(
    "spaces",
    metadata,
    sa.Column("space", sa.String(80), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),  # the number of the space's latest event
)

events_table = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("space", sa.String(80), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),  # order within the space: the latest wins
    sa.Column(
        "uid", sa.String(32), nullable=False
    ),  # the session's own id for the event: a retried write is not doubled
    sa.Column("stream", sa.String(16), nullable=False),  # "decision" or "audit"
    sa.Column("path_key", sa.BigInteger, nullable=False),  # a hash of the path: paths are too long for an index
    sa.Column("image_path", sa.Text, nullable=False),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=True),
    sa.Column("kind", sa.String(16), nullable=False),  # exclude / keep / relabel / undo
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("old_label", sa.Text, nullable=False, default=""),
    sa.Column("new_label", sa.Text, nullable=False, default=""),  # the audit's verified label in the audit stream
    sa.Column("source", sa.String(16), nullable=False, default=""),
    sa.Column("decided_by", sa.Text, nullable=False),
    sa.Column("decided_at", sa.Float, nullable=False),  # seconds since the epoch, as the deciding session saw it
    sa.Column("settles", sa.Boolean, nullable=False, default=False),  # this decision settled a disagreement
    sa.UniqueConstraint("space", "seq", name="events_space_seq"),
    sa.UniqueConstraint("space", "uid", name="events_space_uid"),
    sa.Index("events_by_path", "space", "path_key", "seq"),
    sa.Index("events_by_dataset", "dataset_id"),
)

claims_table = sa.Table(
    "claims",
    metadata,
    sa.Column("space", sa.String(80), primary_key=True),
    sa.Column("path_key", sa.BigInteger, primary_key=True),
    sa.Column("image_path", sa.Text, nullable=False),
    sa.Column("holder", sa.String(32), nullable=False),  # the browser session holding it: what it lets go of
    sa.Column("held_by", sa.Text, nullable=False),  # who that session is, to say so
    sa.Column("until", sa.Float, nullable=False),  # seconds since the epoch
    sa.Index("claims_by_space", "space", "until"),
)


def _add_claims(conn) -> None:
    claims_table.create(conn, checkfirst=True)


# Each entry turns schema version i into i + 1 (the list's index); a new version appends one function.
MIGRATIONS: list = [_add_claims]


# ---------------------------------------------------------------- what is stored


@dataclass(frozen=True)
class Event:
    """One decision (or audit verdict) on one image, as made; `seq` is set once the store has it."""

    path: str
    kind: str  # exclude / keep / relabel / undo
    decided_by: str
    stream: str = "decision"
    reason: str = ""
    old_label: str = ""
    new_label: str = ""
    source: str = ""
    decided_at: float = field(default_factory=time.time)
    settles: bool = False
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)
    seq: int = 0
    dataset_id: int | None = None

    def decision(self) -> Decision | None:
        """The decision this event leaves the image with (None: an undo)."""
        if self.kind == "undo":
            return None
        return Decision(
            self.kind,
            reason=self.reason,
            old_label=self.old_label,  # type: ignore[arg-type]
            new_label=self.new_label if self.kind == "relabel" else "",
            decided_by=self.decided_by,
            source=self.source if self.source in ("queue", "selection", "audit") else "",
        )  # type: ignore

    def verdict(self) -> AuditVerdict | None:
        return None if self.kind == "undo" else AuditVerdict(self.kind, self.new_label)  # type: ignore[arg-type]


def decision_event(path: str, decision: Decision | None, who: str, settles: bool = False) -> Event:
    """The event by which `who` gives an image this decision (None: takes its decision back). The event is always
    `who`'s, even when it restores someone else's decision (an undo): the history says who did what."""
    if decision is None:
        return Event(path, "undo", who)
    return Event(
        path,
        decision.kind,
        who,
        reason=decision.reason,
        old_label=decision.old_label,
        new_label=decision.new_label,
        source=decision.source,
        settles=settles,
    )


def audit_event(path: str, verdict: AuditVerdict | None, who: str) -> Event:
    if verdict is None:
        return Event(path, "undo", who, stream="audit")
    return Event(path, verdict.kind, who, stream="audit", new_label=verdict.label, source="audit")


def path_key(path: str) -> int:
    """A signed 64-bit hash of the path: what the index holds (a path may be longer than an index entry may)."""
    return int.from_bytes(
        hashlib.blake2b(path.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big", signed=True
    )


def paths_identity(paths: Iterable[str]) -> str:
    """A dataset's identity from its image paths alone (sorted, so row order does not matter)."""
    h = hashlib.sha256(b"cleaner-paths\0")
    for p in sorted(set(map(str, paths))):
        h.update(p.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


def token_space(token: str) -> str:
    """The space of one token's decisions: named by a hash, so the database never holds the token."""
    return "token:" + hashlib.sha256(f"cleaner-store\0{token}".encode()).hexdigest()[:40]


@dataclass(frozen=True)
class Current:
    """The current decisions and audit verdicts of a set of images, with the events that set them."""

    decisions: dict[str, Event]  # path -> latest non-undo decision event
    audit: dict[str, Event]
    seq: int  # the space's number when read: later events come from `events_since(space, seq)`


@dataclass(frozen=True)
class Conflict:
    """Teammates disagree on one image: each person's latest decision since it was last settled."""

    path: str
    by_person: tuple[Event, ...]  # oldest first
    current: Event | None  # what the image has now (the latest event)


# ---------------------------------------------------------------- the store


def hide_password(url: str | URL) -> str:
    """The URL as it may be shown or logged."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(an unreadable database URL)"


def default_url(cache_dir: Path) -> str:
    return f"sqlite:///{Path(cache_dir) / DATABASE_FILE}"


class DecisionStore:
    """One database of decision events (one per server process and URL: it holds a pool of connections)."""

    def __init__(self, url: str, *, pool_size: int = 5):
        self._password = ""
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError) as exc:
            raise StoreError(
                "CLEANER_DATABASE_URL is not a database URL (expected e.g. "
                "postgresql+psycopg://user:password@host/db or sqlite:///path)."
            ) from exc
        self._password = parsed.password or ""
        self.shown_url = parsed.render_as_string(hide_password=True)
        backend = parsed.get_backend_name()
        if backend == "postgresql" and parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3, not the psycopg2 SQLAlchemy assumes
        if backend not in ("sqlite", "postgresql"):
            raise StoreError(f"cleaner keeps decisions in SQLite or PostgreSQL, not {backend} ({self.shown_url}).")
        self.backend = backend
        kwargs: dict = {"hide_parameters": True, "future": True}
        if backend == "sqlite":
            db = parsed.database or ""
            if db and db != ":memory:" and not db.startswith("file:"):
                try:
                    Path(db).parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(self._message(exc, "prepare")) from None
            kwargs["connect_args"] = {"timeout": _SQLITE_BUSY_MS / 1000, "check_same_thread": False}
        else:
            kwargs.update(
                pool_size=pool_size,
                max_overflow=10,
                pool_pre_ping=True,
                pool_timeout=30,
                connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
            )
        self.engine: Engine = sa.create_engine(parsed, **kwargs)
        if backend == "sqlite":
            sa_event.listen(self.engine, "connect", _sqlite_pragmas)
        self._write_lock = threading.Lock() if backend == "sqlite" else None
        self._guard(self._migrate, "prepare")

    @classmethod
    def open(cls, url: str | None, cache_dir: Path) -> DecisionStore:
        return cls(url or default_url(cache_dir))

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------ errors

    def _message(self, exc: BaseException, doing: str) -> str:
        original = getattr(exc, "orig", None) or exc
        text = " ".join(str(original).split())
        if self._password:
            text = text.replace(self._password, "***")
        lowered = text.lower()
        if "read-only" in lowered or "readonly" in lowered or "read only" in lowered:
            why = "it is read-only"
        elif any(
            w in lowered
            for w in (
                "connection refused",
                "could not connect",
                "connection failed",
                "timeout",
                "timed out",
                "unable to open",
                "no such host",
                "server closed",
                "terminating connection",
                "could not translate host",
            )
        ):
            why = "it cannot be reached"
        elif "locked" in lowered or "busy" in lowered:
            why = "it stayed busy"
        elif "disk" in lowered and "full" in lowered:
            why = "its disk is full"
        else:
            why = "it gave an error"
        detail = text if len(text) <= 200 else text[:199] + "…"
        return f"The decision database ({self.shown_url}) could not {doing} decisions: {why} ({detail})."

    def _guard(self, fn, doing: str, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StoreError:
            raise
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(self._message(exc, doing)) from None  # no chained exception carries the URL

    # ------------------------------------------------------------ schema

    def _migrate(self) -> None:
        """Create the tables on a new database, bring an older one up to date, refuse a newer one."""
        for attempt in range(3):
            try:
                metadata.create_all(self.engine, tables=[schema_table], checkfirst=True)
                with self.engine.begin() as conn:
                    found = conn.execute(sa.select(schema_table.c.version)).scalar()
                    if found is None:
                        metadata.create_all(conn, checkfirst=True)
                        conn.execute(schema_table.insert().values(version=SCHEMA_VERSION))
                        return
                    if found > SCHEMA_VERSION:
                        raise StoreError(
                            f"The decision database ({self.shown_url}) was written by a newer cleaner "
                            f"(schema {found}; this one knows {SCHEMA_VERSION}): upgrade cleaner."
                        )
                    for version in range(found, SCHEMA_VERSION):
                        MIGRATIONS[version - 1](conn)
                    if found != SCHEMA_VERSION:
                        conn.execute(schema_table.update().values(version=SCHEMA_VERSION))
                return
            except IntegrityError:
                if attempt == 2:  # another server created the same tables at the same moment: look again
                    raise
            except SQLAlchemyError as exc:
                if "already exists" not in str(exc) or attempt == 2:
                    raise

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(schema_table.c.version)).scalar_one())

    # ------------------------------------------------------------ datasets

    def dataset_id(self, identity: str, name: str, n_images: int) -> int:
        """The id of a dataset known by the identity of its paths (registered on first sight)."""
        return self._guard(self._dataset_id, "save", identity, name, n_images)

    def _dataset_id(self, identity: str, name: str, n_images: int) -> int:
        query = sa.select(datasets_table.c.id).where(datasets_table.c.identity == identity)
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar()
        if found is not None:
            return int(found)
        try:
            with self._writing(), self.engine.begin() as conn:
                return int(
                    conn.execute(
                        datasets_table.insert()
                        .values(identity=identity, name=name[:500], n_images=int(n_images), first_seen=time.time())
                        .returning(datasets_table.c.id)
                    ).scalar_one()
                )
        except IntegrityError:  # registered by another session meanwhile
            with self.engine.connect() as conn:
                return int(conn.execute(query).scalar_one())

    # ------------------------------------------------------------ writing

    def _writing(self):
        """SQLite has one writer at a time anyway: queue this process's writers here rather than in busy-waits."""
        return self._write_lock if self._write_lock is not None else _NoLock()

    def append(self, space: str, events: Sequence[Event], dataset_id: int | None = None) -> list[Event]:
        """Write the events in one transaction, numbered in order; returns them with their numbers. Events already
        stored (the same uid: a write retried after its answer was lost) are not written twice."""
        if not events:
            return []
        for e in events:
            if e.kind not in EVENT_KINDS or e.stream not in STREAMS:
                raise ValueError(f"not an event the store keeps: {e.stream} {e.kind}")
        return self._guard(self._append, "save", space, list(events), dataset_id)

    def _append(self, space: str, events: list[Event], dataset_id: int | None) -> list[Event]:
        for attempt in range(3):
            try:
                with self._writing(), self.engine.begin() as conn:
                    # Taking the space's number locks its row until commit: numbers are given in commit order.
                    bump = (
                        spaces_table.update()
                        .where(spaces_table.c.space == space)
                        .values(seq=spaces_table.c.seq + len(events))
                        .returning(spaces_table.c.seq)
                    )
                    top = conn.execute(bump).scalar()
                    if top is None:
                        conn.execute(spaces_table.insert().values(space=space, seq=len(events)))
                        top = len(events)
                    uids = [e.uid for e in events]
                    known = set(
                        conn.execute(
                            sa.select(events_table.c.uid).where(
                                events_table.c.space == space, events_table.c.uid.in_(uids)
                            )
                        ).scalars()
                    )
                    fresh = [e for e in events if e.uid not in known]
                    first = int(top) - len(events) + 1
                    stored = [
                        replace(e, seq=first + i, dataset_id=e.dataset_id or dataset_id) for i, e in enumerate(fresh)
                    ]
                    if stored:
                        conn.execute(events_table.insert(), [_row(space, e) for e in stored])
                    return stored
            except IntegrityError:
                if attempt == 2:  # the space's first events, written by two sessions at once: number again
                    raise
        return []

    # ------------------------------------------------------------ reading

    def head(self, space: str) -> int:
        """The number of the space's latest event (0: none yet); a cheap "anything new?"."""

        def read() -> int:
            with self.engine.connect() as conn:
                found = conn.execute(sa.select(spaces_table.c.seq).where(spaces_table.c.space == space)).scalar()
            return int(found or 0)

        return self._guard(read, "read")

    def events_since(self, space: str, seq: int, limit: int = 100_000) -> list[Event]:
        """The space's events after number `seq`, oldest first."""
        query = (
            sa.select(events_table)
            .where(events_table.c.space == space, events_table.c.seq > int(seq))
            .order_by(events_table.c.seq)
            .limit(limit)
        )
        return self._guard(self._events, "read", query)

    def _events(self, query) -> list[Event]:
        with self.engine.connect() as conn:
            return [_event(r) for r in conn.execute(query).mappings()]

    def events_for(self, space: str, paths: Iterable[str]) -> list[Event]:
        """Every event on these images, oldest first (the images' whole history)."""
        wanted = {str(p) for p in paths}
        keys = sorted({path_key(p) for p in wanted})
        return self._guard(self._events_for_keys, "read", space, keys, wanted)

    def _events_for_keys(self, space: str, keys: list[int], wanted: set[str]) -> list[Event]:
        found: list[Event] = []
        with self.engine.connect() as conn:
            for i in range(0, len(keys), _KEY_CHUNK):
                query = sa.select(events_table).where(
                    events_table.c.space == space, events_table.c.path_key.in_(keys[i : i + _KEY_CHUNK])
                )
                found += [e for e in map(_event, conn.execute(query).mappings()) if e.path in wanted]
        found.sort(key=lambda e: e.seq)
        return found

    def history(self, space: str, path: str) -> list[Event]:
        return self.events_for(space, [path])

    def current(self, space: str, paths: np.ndarray | Sequence[str]) -> Current:
        """The current decisions and verdicts of the images with these paths (a dataset's, say)."""
        return self._guard(self._current, "read", space, paths)

    def _current(self, space: str, paths) -> Current:
        with self.engine.connect() as conn:
            seq = int(conn.execute(sa.select(spaces_table.c.seq).where(spaces_table.c.space == space)).scalar() or 0)
            decided = np.fromiter(
                conn.execute(
                    sa.select(events_table.c.path_key).where(events_table.c.space == space).distinct()
                ).scalars(),
                dtype=np.int64,
            )
        wanted = {str(p) for p in paths}
        if not len(decided):
            return Current({}, {}, seq)
        # Decisions are few beside a dataset's images: look up only the images this space ever decided.
        mine = np.fromiter((path_key(p) for p in wanted), dtype=np.int64, count=len(wanted))
        keys = np.intersect1d(decided, mine).tolist()
        events = [e for e in self._events_for_keys(space, keys, wanted) if e.seq <= seq]
        decisions, audit = fold(events)
        return Current(decisions, audit, seq)

    def decided_paths(self, space: str, dataset_ids: Iterable[int]) -> set[str]:
        """The images ever decided in these datasets (versions of one dataset, say)."""
        ids = sorted({int(i) for i in dataset_ids})
        if not ids:
            return set()
        query = (
            sa.select(events_table.c.image_path)
            .where(events_table.c.space == space, events_table.c.dataset_id.in_(ids))
            .distinct()
        )

        def read() -> set[str]:
            with self.engine.connect() as conn:
                return set(conn.execute(query).scalars())

        return self._guard(read, "read")

    def conflicts(self, space: str, paths: Iterable[str]) -> list[Conflict]:
        """The images among these on which people disagree since they were last settled."""
        return find_conflicts(self.events_for(space, paths))

    # ------------------------------------------------------------ claims

    def hold(
        self, space: str, paths: Sequence[str], holder: str, who: str, now: float | None = None, hold_s: float = CLAIM_S
    ) -> set[str]:
        """Hold these images for a session (renewing its claims on them) and let go of the others it held; an image
        another person's session holds is left to it. Returns the paths this session holds now."""
        return self._guard(self._hold, "save", space, [str(p) for p in paths], holder, who, now, hold_s)

    def _hold(self, space: str, paths: list[str], holder: str, who: str, now: float | None, hold_s: float) -> set[str]:
        now = time.time() if now is None else now
        wanted = {path_key(p): p for p in paths}
        c = claims_table.c
        for attempt in range(3):
            try:
                with self._writing(), self.engine.begin() as conn:
                    conn.execute(  # let go of what the session no longer shows, and of long-expired claims
                        claims_table.delete().where(
                            c.space == space,
                            sa.or_(
                                sa.and_(c.holder == holder, c.path_key.not_in(list(wanted))),
                                c.until < now - 10 * hold_s,
                            ),
                        )
                    )
                    held: dict[int, tuple[str, str, float]] = {}
                    keys = list(wanted)
                    for i in range(0, len(keys), _KEY_CHUNK):
                        query = sa.select(c.path_key, c.image_path, c.held_by, c.until).where(
                            c.space == space, c.path_key.in_(keys[i : i + _KEY_CHUNK])
                        )
                        if self.backend == "postgresql":  # in key order: two sessions never wait on each other
                            query = query.order_by(c.path_key).with_for_update()
                        held.update({r.path_key: (r.image_path, r.held_by, r.until) for r in conn.execute(query)})
                    mine, fresh, renew = set(), [], []
                    for key, path in wanted.items():
                        found = held.get(key)
                        if found is None:
                            fresh.append({"space": space, "path_key": key, "image_path": path})
                        elif found[1] == who or found[2] < now or found[0] != path:
                            # the same person's other tab (or the one a reload replaced) never hides an image from
                            # them; a hash shared by two paths goes to the one shown last
                            renew.append(key)
                        else:
                            continue
                        mine.add(path)
                    values = {"holder": holder, "held_by": who, "until": now + hold_s}
                    if fresh:
                        conn.execute(claims_table.insert(), [{**row, **values} for row in fresh])
                    if renew:
                        conn.execute(
                            claims_table.update()
                            .where(c.space == space, c.path_key.in_(renew))
                            .values(image_path=sa.case({k: wanted[k] for k in renew}, value=c.path_key), **values)
                        )
                    return mine
            except IntegrityError:
                if attempt == 2:  # another session claimed one of these images at the same moment: look again
                    raise
        return set()

    def held_by_others(self, space: str, who: str, now: float | None = None) -> dict[str, str]:
        """The images other people's sessions hold in this space now, and who holds each."""
        now = time.time() if now is None else now
        c = claims_table.c
        query = sa.select(c.image_path, c.held_by).where(c.space == space, c.until >= now, c.held_by != who)

        def read() -> dict[str, str]:
            with self.engine.connect() as conn:
                return {r.image_path: r.held_by for r in conn.execute(query)}

        return self._guard(read, "read")

    def size_bytes(self) -> int | None:
        """The database's size on disk (for the load bench), when the backend says."""

        def read() -> int | None:
            with self.engine.connect() as conn:
                if self.backend == "sqlite":
                    pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
                    size = conn.exec_driver_sql("PRAGMA page_size").scalar()
                    return int(pages) * int(size)
                return int(conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar())

        return self._guard(read, "read")


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
        cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged decision survives even a power cut
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
    finally:
        cursor.close()


def _row(space: str, e: Event) -> dict:
    return {
        "space": space,
        "seq": e.seq,
        "uid": e.uid,
        "stream": e.stream,
        "path_key": path_key(e.path),
        "image_path": e.path,
        "dataset_id": e.dataset_id,
        "kind": e.kind,
        "reason": e.reason,
        "old_label": e.old_label,
        "new_label": e.new_label,
        "source": e.source,
        "decided_by": e.decided_by,
        "decided_at": float(e.decided_at),
        "settles": bool(e.settles),
    }


def _event(r) -> Event:
    return Event(
        r["image_path"],
        r["kind"],
        r["decided_by"],
        stream=r["stream"],
        reason=r["reason"],
        old_label=r["old_label"],
        new_label=r["new_label"],
        source=r["source"],
        decided_at=float(r["decided_at"]),
        settles=bool(r["settles"]),
        uid=r["uid"],
        seq=int(r["seq"]),
        dataset_id=r["dataset_id"],
    )


def fold(events: Iterable[Event]) -> tuple[dict[str, Event], dict[str, Event]]:
    """The latest event per image and stream, undos removed: the current decisions and audit verdicts."""
    latest: dict[tuple[str, str], Event] = {}
    for e in sorted(events, key=lambda e: e.seq):
        latest[(e.stream, e.path)] = e
    decisions = {p: e for (s, p), e in latest.items() if s == "decision" and e.kind != "undo"}
    audit = {p: e for (s, p), e in latest.items() if s == "audit" and e.kind != "undo"}
    return decisions, audit


def find_conflicts(events: Iterable[Event]) -> list[Conflict]:
    """Images where, since the image was last settled, two people's latest decisions differ (an exclusion against
    a keep, or two different relabels). A person who took their decision back no longer takes part."""
    by_path: dict[str, list[Event]] = {}
    for e in sorted(events, key=lambda e: e.seq):
        if e.stream == "decision":
            by_path.setdefault(e.path, []).append(e)
    found: list[Conflict] = []
    for path, history in by_path.items():
        settled_at = max((i for i, e in enumerate(history) if e.settles), default=-1)
        person: dict[str, Event] = {}
        for e in history[max(settled_at, 0) :]:  # the settling decision stands for its maker
            person[e.decided_by] = e
        standing = [e for e in person.values() if e.kind != "undo"]
        if len({(e.kind, e.new_label) for e in standing}) > 1:
            latest = history[-1]
            found.append(
                Conflict(path, tuple(sorted(standing, key=lambda e: e.seq)), None if latest.kind == "undo" else latest)
            )
    return found


# ---------------------------------------------------------------- one server's stores

_stores: dict[str, DecisionStore] = {}
_stores_lock = threading.Lock()


def shared_store(url: str | None, cache_dir: Path) -> DecisionStore:
    """This process's store for a URL (opened once; a store that failed to open is tried again next call)."""
    key = url or default_url(cache_dir)
    with _stores_lock:
        found = _stores.get(key)
        if found is None:
            found = _stores[key] = DecisionStore(key)
        return found


# ---------------------------------------------------------------- one session's link to the store


@dataclass
class Applied:
    """What opening a dataset's decisions brought into a session."""

    decisions: dict[str, Decision]
    audit: dict[str, AuditVerdict]
    from_earlier: int = 0  # of them, made on an earlier version of the dataset (other paths, or other embeddings)
    left_out: int = 0  # decisions on that earlier version whose image is no longer in the dataset (kept, not applied)


class Ledger:
    """One session's link between its decisions on one dataset and a space of the store.

    `record` writes events through at once; when the database cannot take them they wait here (in order) and the
    session goes on in memory, with `error` saying why; `flush` (on the next decision, or from the page every few
    seconds) writes them once the database is back. `pull` brings in what others wrote since."""

    def __init__(self, store_opener, space: str, who: str, identity: str, name: str, n_images: int):
        self._open_store = store_opener  # () -> DecisionStore (may raise StoreError)
        self.space = space
        self.who = who
        self.identity = identity
        self.name = name
        self.n_images = n_images
        self.dataset_id: int | None = None
        self.seq = 0  # the space's events up to here are in the session
        self.pending: list[Event] = []
        self.error = ""
        self.retry_at = 0.0
        self.written = 0  # events this session wrote
        self.mine: set[str] = set()  # the uids of this session's own events (they come back in `pull`)
        self.opened = False  # the space's decisions were brought into the session
        self.cache: dict = {}  # what the page read from the store, keyed on `seq` by its readers
        self.holder = uuid.uuid4().hex  # this session's name on the images it holds (what it lets go of)
        self._lock = threading.Lock()

    def store(self) -> DecisionStore:
        return self._store()

    def due(self, now: float | None = None) -> bool:
        """Whether trying the database again is due (always, unless it failed moments ago)."""
        return not self.error or (time.time() if now is None else now) >= self.retry_at

    def failed(self, exc: StoreError, now: float | None = None) -> None:
        self.error = str(exc)
        self.retry_at = (time.time() if now is None else now) + RETRY_AFTER_S

    def _store(self) -> DecisionStore:
        store = self._open_store()
        if self.dataset_id is None:
            self.dataset_id = store.dataset_id(self.identity, self.name, self.n_images)
        return store

    def open(self, paths: np.ndarray) -> Applied:
        """The space's current decisions on these images (raises StoreError)."""
        store = self._store()
        current = store.current(self.space, paths)
        self.seq = max(self.seq, current.seq)
        self.opened = True
        earlier = {e.dataset_id for e in current.decisions.values() if e.dataset_id not in (None, self.dataset_id)}
        from_earlier = sum(1 for e in current.decisions.values() if e.dataset_id in earlier)
        left_out = 0
        if earlier:
            gone = store.decided_paths(self.space, earlier) - {str(p) for p in paths}
            if gone:
                left_out = len(store.current(self.space, sorted(gone)).decisions)
        return Applied(
            {p: e.decision() for p, e in current.decisions.items()},  # type: ignore[misc]
            {p: e.verdict() for p, e in current.audit.items()},
            from_earlier,
            left_out,
        )  # type: ignore

    def record(self, events: Sequence[Event], now: float | None = None) -> bool:
        """Queue the events and write everything queued (unless the database failed moments ago). True: written."""
        with self._lock:
            self.pending.extend(events)
            self.mine.update(e.uid for e in events)
        if not self.due(now):
            return False
        return self.flush(now)

    def flush(self, now: float | None = None) -> bool:
        """Write what waits; True when nothing is left waiting."""
        with self._lock:
            if not self.pending:
                return True
            batch = list(self.pending)
            try:
                store = self._store()
                stored = store.append(self.space, batch, self.dataset_id)
            except StoreError as exc:
                self.failed(exc, now)
                return False
            del self.pending[: len(batch)]
            self.written += len(stored)
            self.error = ""
            return True

    def pull(self) -> list[Event]:
        """Events others wrote since this session last looked (its own come back too; callers skip them by uid)."""
        try:
            store = self._store()
            if store.head(self.space) <= self.seq:
                return []
            found = store.events_since(self.space, self.seq)
        except StoreError as exc:
            self.error = self.error or str(exc)
            return []
        if found:
            self.seq = found[-1].seq
        return found

    def others(self) -> list[Event]:
        """What others wrote since this session last looked, where it is the latest: an image whose latest event
        in that stretch is this session's own keeps it (an earlier event of someone else's lost to it)."""
        latest: dict[tuple[str, str], Event] = {}
        for e in self.pull():
            latest[(e.stream, e.path)] = e
        return sorted((e for e in latest.values() if e.uid not in self.mine), key=lambda e: e.seq)

    def hold(self, paths: Sequence[str], now: float | None = None) -> set[str] | None:
        """Hold the images this session shows (letting go of the rest); the paths held, or None when the database
        could not say. A claim is a courtesy to teammates: a failed one never stops the session."""
        try:
            return self._store().hold(self.space, paths, self.holder, self.who, now)
        except StoreError:
            return None

    def held_by_others(self, now: float | None = None) -> dict[str, str]:
        """The images other people's sessions hold now, and who holds each ({} when the database cannot say)."""
        try:
            return self._store().held_by_others(self.space, self.who, now)
        except StoreError:
            return {}

    def waiting(self) -> set[tuple[str, str]]:
        """(stream, path) of the events this session has not written yet: they will be the latest, so they win."""
        with self._lock:
            return {(e.stream, e.path) for e in self.pending}


# ---------------------------------------------------------------- a session's decisions and the store's


def same_decision(a: Decision | None, b: Decision | None) -> bool:
    return (a is None) == (b is None) and (a is None or (a.kind, a.new_label) == (b.kind, b.new_label))  # type: ignore


def merge_in(
    decisions: Decisions, applied: Applied, who: str, classes: Iterable[str] | None = None
) -> tuple[int, list[Event]]:
    """Bring the store's current decisions into a session's; where both decided the session's stand (they are the
    newer). A relabel to a class the dataset does not have (made on another version of it) is left out. Returns how
    many were brought in, and the events that put the session's own into the store."""
    known = None if classes is None else set(classes)
    brought = 0
    for path, decision in applied.decisions.items():
        if path not in decisions and (known is None or decision.kind != "relabel" or decision.new_label in known):
            decisions.put(path, decision)
            brought += 1
    for path, verdict in applied.audit.items():
        if path not in decisions.audit and (known is None or verdict.kind == "exclude" or verdict.label in known):
            decisions.set_audit(path, verdict)
    events = [
        decision_event(p, d, who)
        for p, d in decisions.by_path.items()
        if not same_decision(applied.decisions.get(p), d)
    ]
    events += [audit_event(p, v, who) for p, v in decisions.audit.items() if applied.audit.get(p) != v]
    return brought, events


def apply_events(
    decisions: Decisions, events: Iterable[Event], known: Iterable[str], waiting: set[tuple[str, str]] = frozenset()
) -> list[Event]:  # type: ignore[assignment]
    """Others' events on this dataset's images (`known`: the paths among theirs that are in it) into a session's
    decisions, oldest first; an image with a decision of this session's still waiting to be written keeps it.
    Returns the events applied."""
    known = set(known)
    applied = []
    for e in sorted(events, key=lambda e: e.seq):
        if e.path not in known or (e.stream, e.path) in waiting:
            continue
        if e.stream == "decision":
            if not same_decision(decisions.get(e.path), e.decision()) or e.decision() != decisions.get(e.path):
                decisions.put(e.path, e.decision())
        else:
            decisions.set_audit(e.path, e.verdict())
        applied.append(e)
    return applied
