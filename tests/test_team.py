"""A session's work written through to the decision store, and team mode (sessions sharing one space): every
decision, undo and audit verdict reaches the store; teammates' decisions come in; a new NPZ of the same images gets
them; a database that fails keeps the session working and is written to once it is back. SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest

from cleaner.decisions.store import TEAM_SPACE, DecisionStore, Ledger, paths_identity, token_space
from cleaner.graph.neighbours import neighbour_graph
from cleaner.io.dataset import dataset_from_arrays, load_npz
from cleaner.issues.review import pending_rows
from cleaner.issues.suspects import scores_from_graph
from cleaner.ui.compute import learn_from_decisions
from cleaner.ui.review_queue import QUEUE_SHOWN, _emptied_note, _skipped_note
from cleaner.ui.state import DatasetWork
from cleaner.ui.team import free_suspects, held_cards, histories, teammates_excluded_rows

from .conftest import clustered_arrays, good_arrays, npz
from .pg_fixture import postgres_cluster  # noqa: F401  (the session fixture)

ANN, BOB = "ann@team.example", "bob@crew.example"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'decisions.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_cluster").new_database()
    s = DecisionStore(url)
    yield s
    s.close()


def dataset(n: int = 24, seed: int = 0, rows: slice | np.ndarray | None = None):
    arrays = good_arrays(n=n, seed=seed)
    if rows is not None:
        arrays = {k: v[rows] for k, v in arrays.items()}
    return load_npz(npz(**arrays), name=f"ds{seed}")


def session(store: DecisionStore, ds, user: str, space: str = TEAM_SPACE) -> DatasetWork:
    work = DatasetWork(ds, user=user)
    work.attach(Ledger(lambda: store, space, user, paths_identity(ds.image_paths.tolist()), ds.name, ds.n))
    return work


def kinds(work: DatasetWork) -> dict[str, tuple[str, str]]:
    return {p: (d.kind, d.decided_by) for p, d in work.decisions.by_path.items()}


def test_every_action_is_written_through_and_undo_is_an_event(store):
    ds = dataset()
    work = session(store, ds, ANN)
    path = str(ds.image_paths[0])
    work.decide(0, "exclude", "blurry")
    work.decide(
        1,
        "relabel",
        "wrong",
        new_label=ds.class_names[0] if ds.label_text(1) != ds.class_names[0] else ds.class_names[1],
    )
    work.set_excluded([2, 3], True)
    work.set_excluded([3], False)
    work.audit(4, "keep")
    work.undo()  # the audit's verdict on row 4
    current = store.current(TEAM_SPACE, ds.image_paths)
    assert {p: e.kind for p, e in current.decisions.items()} == {
        path: "exclude",
        str(ds.image_paths[1]): "relabel",
        str(ds.image_paths[2]): "exclude",
    }
    assert current.audit == {}
    assert [e.kind for e in store.history(TEAM_SPACE, str(ds.image_paths[3]))] == ["exclude", "undo"]
    assert {e.decided_by for e in store.events_since(TEAM_SPACE, 0)} == {ANN}
    assert work.ledger.pending == [] and work.ledger.error == ""


def test_one_click_delivered_twice_is_one_decision(store):
    """Under load one click's callback can run twice (bench/load.py --team saw two events 0.1 s apart); the same
    decision from the same place by the same person is then no second event, and one undo takes it back. A teammate's
    identical decision, or the same person's from elsewhere, is recorded."""
    ds = dataset()
    ann, bob = session(store, ds, ANN), session(store, ds, BOB)
    path = str(ds.image_paths[0])
    ann.decide(0, "exclude", "blurry")
    ann.decide(0, "exclude", "blurry")
    assert [(e.kind, e.decided_by) for e in store.history(TEAM_SPACE, path)] == [("exclude", ANN)]
    assert len(ann.undo_stack) == 1 and ann.last_decided == (path, "exclude", "")
    bob.sync()
    bob.decide(0, "exclude", "agrees")
    ann.decide(0, "exclude", "from the map", source="selection")
    assert [(e.kind, e.decided_by) for e in store.history(TEAM_SPACE, path)] == [
        ("exclude", ANN),
        ("exclude", BOB),
        ("exclude", ANN),
    ]
    ann.undo()
    ann.undo()
    assert not ann.decisions.is_excluded(path)


def test_teammates_decisions_come_in_and_settling_ends_a_conflict(store):
    ds = dataset()
    ann, bob = session(store, ds, ANN), session(store, ds, BOB)
    ann.decide(0, "exclude", "blurry")
    bob.decide(1, "keep", "fine")
    bob.sync()
    ann.sync()
    assert kinds(bob)[str(ds.image_paths[0])] == ("exclude", ANN)  # attributed to whoever decided
    assert kinds(ann)[str(ds.image_paths[1])] == ("keep", BOB)
    bob.decide(0, "keep", "looks fine to me")  # a disagreement
    conflicts = store.conflicts(TEAM_SPACE, ds.image_paths)
    assert [c.path for c in conflicts] == [str(ds.image_paths[0])]
    ann.sync()
    ann.settle(str(ds.image_paths[0]), "exclude")
    assert store.conflicts(TEAM_SPACE, ds.image_paths) == []
    bob.sync()
    assert kinds(bob)[str(ds.image_paths[0])] == ("exclude", ANN)
    assert bob.decisions.decisions_csv().count(ANN) == 1  # the downloads say who decided
    # A third session opening the dataset later gets the whole team's state.
    cat = session(store, ds, "cat@crew.example")
    assert kinds(cat) == kinds(bob)


def test_a_page_of_cards_reads_its_histories_in_one_query_and_again_after_a_teammate_decides(store):
    ds = dataset()
    ann, bob = session(store, ds, ANN), session(store, ds, BOB)
    ann.decide(0, "exclude", "blurry")
    ann.undo()
    bob.decide(1, "keep", "fine")
    bob.sync()
    reads = []
    events_for = store.events_for
    store.events_for = lambda space, paths: reads.append(sorted(paths)) or events_for(space, paths)  # counts reads
    try:
        rows = [0, 1, 2, 3]
        found = histories(bob, rows)
        assert len(reads) == 1 and reads[0] == sorted(str(ds.image_paths[r]) for r in rows)
        assert [(e.kind, e.decided_by) for e in found[0]] == [("exclude", ANN), ("undo", ANN)]
        assert [(e.kind, e.decided_by) for e in found[1]] == [("keep", BOB)]
        assert found[2] == [] and found[3] == []
        assert histories(bob, rows) == found and len(reads) == 1  # nothing new: no read
        ann.decide(2, "relabel", "odd", str(ds.class_names[0]))
        bob.sync()  # a teammate's decision moves the space on: every card's history is read again, in one query
        again = histories(bob, rows)
        assert len(reads) == 2 and [(e.kind, e.decided_by) for e in again[2]] == [("relabel", ANN)]
        assert again[0] == found[0] and again[1] == found[1]
    finally:
        store.events_for = events_for


def test_the_map_marks_the_rows_a_teammate_excluded_apart_from_yours(store):
    ds = dataset()
    ann, bob = session(store, ds, ANN), session(store, ds, BOB)
    ann.set_excluded([0, 1, 4], True)
    ann.decide(5, "keep", "fine")  # a teammate's decision that is no exclusion: not an excluded mark
    bob.decide(2, "exclude", "blurry")
    bob.sync()
    assert bob.excluded_rows().tolist() == [0, 1, 2, 4]
    assert teammates_excluded_rows(bob).tolist() == [0, 1, 4]  # what Ann excluded, computed from the decisions
    bob.set_excluded([1], False)  # Bob takes one back: his now, and no longer excluded
    assert teammates_excluded_rows(bob).tolist() == [0, 4]
    ann.sync()
    assert teammates_excluded_rows(ann).tolist() == [2]
    alone = session(store, ds, ANN, space=token_space("a-token-of-ann"))
    alone.decide(3, "exclude", "blurry")
    assert teammates_excluded_rows(alone) is None  # not team mode: the map draws one kind of exclusion


def test_a_new_npz_of_the_same_images_gets_the_decisions_and_says_so(store):
    old = dataset(n=30)
    work = session(store, old, ANN)
    for row in range(6):
        work.decide(row, "exclude", "blurry")
    # Re-embedded with another model, rows shuffled, the first two images gone and nothing else changed.
    order = np.random.default_rng(1).permutation(np.arange(2, 30))
    arrays = good_arrays(n=30, seed=0)
    arrays = {
        "embeddings": np.random.default_rng(5).normal(size=(28, 9)).astype(np.float32),
        "labels": arrays["labels"][order],
        "image_paths": arrays["image_paths"][order],
    }
    new = load_npz(npz(**arrays), name="v2")
    assert new.digest != old.digest
    later = session(store, new, BOB)
    assert sorted(later.decisions.paths("exclude")) == sorted(str(p) for p in old.image_paths[2:6])
    kind, text = later.store_note
    assert "4 decisions from an earlier version of this dataset applied" in text
    assert "2 images of that version are no longer in it" in text


def test_an_unreachable_database_keeps_the_session_working_and_writes_through_later(store, tmp_path):
    ds = dataset()
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where a folder should be")
    target = [None]

    def opener():
        return store if target[0] else DecisionStore(f"sqlite:///{blocker / 'x.sqlite3'}")

    work = DatasetWork(ds, user=ANN)
    work.attach(Ledger(opener, TEAM_SPACE, ANN, paths_identity(ds.image_paths.tolist()), ds.name, ds.n))
    assert "could not prepare decisions" in work.ledger.error
    work.decide(0, "exclude", "blurry")
    work.decide(1, "keep", "fine")
    assert work.decisions.count("exclude") == 1 and "exclude" in work.decisions.decisions_csv()  # downloads whole
    target[0] = store  # the database is back
    work.ledger.retry_at = 0
    work.sync()  # opens, merges, writes what waited
    work.sync()
    assert work.ledger.error == "" and work.ledger.pending == []
    assert {p: e.kind for p, e in store.current(TEAM_SPACE, ds.image_paths).decisions.items()} == {
        str(ds.image_paths[0]): "exclude",
        str(ds.image_paths[1]): "keep",
    }


def test_a_token_space_is_private_and_comes_back(store):
    ds = dataset()
    space = token_space("T" * 16)
    first = session(store, ds, "token abc", space=space)
    first.decide(0, "exclude", "blurry")
    again = session(store, ds, "token abc", space=space)  # after a restart, with the token
    assert again.decisions.paths("exclude") == [str(ds.image_paths[0])]
    assert session(store, ds, ANN).decisions.by_path == {}  # the team sees nothing of it


# ---------------------------------------------------------------- the queue when teammates take its cards


def flipped_dataset(flips: int):
    """Four tight classes with `flips` labels moved to the next class: label issues to review."""
    emb, codes = clustered_arrays(n_per_class=60, n_classes=4, dims=8, seed=3)
    flip = np.random.default_rng(4).choice(len(codes), flips, replace=False)
    codes = codes.copy()
    codes[flip] = (codes[flip] + 1) % 4
    names = np.array(["cat", "dog", "fox", "owl"])[codes]
    paths = np.array([f"/data/img_{i:04d}.png" for i in range(len(codes))])
    ds = dataset_from_arrays(emb, names, paths, name="flipped")
    graph = neighbour_graph(ds.embeddings, k=10, metric="euclidean")
    return ds, graph, scores_from_graph(ds, graph)


def queue(work: DatasetWork, graph, result, by: str = "label_issue") -> tuple[list[int | None], np.ndarray]:
    """What the review queue panel shows after a page run: its cards (held for the session in team mode), and the
    suspects left (as the panel does)."""
    work.sync()
    pending = pending_rows(learn_from_decisions(result, graph, work), by, work.decided_rows())
    free, _ = free_suspects(work, pending)
    return held_cards(work, by, free, QUEUE_SHOWN), pending


def test_teammates_on_one_queue_are_shown_different_suspects(store):
    ds, graph, result = flipped_dataset(flips=24)
    ann, bob = session(store, ds, ANN), session(store, ds, BOB)
    ann_cards, pending = queue(ann, graph, result)
    bob_cards, _ = queue(bob, graph, result)
    top = pending.tolist()
    assert ann_cards == top[:QUEUE_SHOWN]  # the first to open the queue gets its top suspects
    assert bob_cards == top[QUEUE_SHOWN : 2 * QUEUE_SHOWN]  # the next one the suspects after them, in order
    assert _skipped_note(0, len(free_suspects(bob, pending)[1])) == f"Skipping {QUEUE_SHOWN} on a teammate's cards now."
    # Ann decides her first card: its place goes to the first suspect on nobody's cards, and Bob's stay put.
    ann.decide(ann_cards[0], "exclude", "mislabelled")
    ann_after, _ = queue(ann, graph, result)
    assert ann_after == [top[2 * QUEUE_SHOWN], *ann_cards[1:]]
    bob_after, _ = queue(bob, graph, result)
    assert bob_after == bob_cards
    assert not set(ann_after) & set(bob_after)


def test_a_lapsed_claim_frees_the_cards_and_an_empty_place_says_who_has_the_image(store):
    from cleaner.decisions.store import claims_table

    ds, graph, result = flipped_dataset(flips=24)
    ann, bob = session(store, ds, ANN), session(store, ds, BOB)
    ann_cards, pending = queue(ann, graph, result)
    with store.engine.begin() as conn:  # Ann closed her tab long ago: her claims ran out
        conn.execute(claims_table.update().values(until=0.0))
    bob_cards, _ = queue(bob, graph, result)
    assert bob_cards == ann_cards == pending[:QUEUE_SHOWN].tolist()
    # With fewer suspects than cards, a place whose image a teammate now has stays empty and says who has it.
    ds, graph, result = flipped_dataset(flips=4)
    ann, bob = session(store, ds, ANN), session(store, ds, BOB)
    bob_cards, pending = queue(bob, graph, result)
    assert bob_cards == pending.tolist() and 1 < len(pending) < QUEUE_SHOWN
    with store.engine.begin() as conn:
        conn.execute(claims_table.update().values(until=0.0))
    first = str(ds.image_paths[pending[0]])
    assert ann.ledger.hold([first]) == {first}  # Ann's page shows the first suspect now
    free, held = free_suspects(bob, pending)
    assert free.tolist() == pending[1:].tolist() and held == {int(pending[0]): ANN}
    assert queue(bob, graph, result)[0] == [None, *pending[1:].tolist()]  # the other cards stay where they were
    note = _emptied_note(bob, "label_issue", 0, {first: ANN})
    assert note.replace("\\", "") == (
        f"{ANN} has {ds.file_name(pending[0])} on their cards now. No other flagged suspect is free to take its place."
    )


def test_sessions_keeping_their_own_decisions_hold_nothing(store):
    ds, graph, result = flipped_dataset(flips=24)
    one = session(store, ds, "token a", space=token_space("a" * 43))
    two = session(store, ds, "token b", space=token_space("b" * 43))
    first, pending = queue(one, graph, result)
    second, _ = queue(two, graph, result)
    assert first == second == pending[:QUEUE_SHOWN].tolist()  # each decides alone: nothing to share out
    assert free_suspects(two, pending)[1] == {}


def test_cards_a_teammate_decided_are_refilled_from_the_suspects_left(store):
    ds, graph, result = flipped_dataset(flips=24)
    ann, bob = session(store, ds, ANN), session(store, ds, BOB)
    cards, pending = queue(ann, graph, result)
    assert len(pending) > 2 * QUEUE_SHOWN and cards == pending[:QUEUE_SHOWN].tolist()
    taken = cards[1:4]
    for row in taken:  # Bob decides three of the images on Ann's cards
        bob.decide(row, "exclude", "mislabelled")
    after, left = queue(ann, graph, result)
    assert not set(taken) & set(left.tolist())
    # Every card still shows a suspect: the untouched ones where they were, the three places taken by the next
    # suspects of Ann's queue in order, and no card shows an image twice.
    untouched = [cards[0], *cards[4:]]
    refill = [r for r in left.tolist() if r not in untouched][:3]
    assert after == [cards[0], *refill, *cards[4:]]
    assert len(set(after)) == QUEUE_SHOWN and set(after) <= set(left.tolist())


def test_a_card_a_teammate_took_when_no_suspect_is_left_says_who_took_it(store):
    ds, graph, result = flipped_dataset(flips=4)
    ann, bob = session(store, ds, ANN), session(store, ds, BOB)
    cards, pending = queue(ann, graph, result)
    assert 1 < len(cards) == len(pending) < QUEUE_SHOWN  # fewer suspects than cards: nothing can refill a place
    mine, theirs = cards[-1], cards[0]
    ann.decide(mine, "keep", "fine")
    assert ann.last_decided == (str(ds.image_paths[mine]), "keep", "")  # the queue confirms it under its count
    bob.decide(theirs, "relabel", "wrong", new_label=ds.class_names[int(result.labels.suggested_label[theirs])])
    after, left = queue(ann, graph, result)
    assert after[0] is None and mine not in after and len(left) == len(pending) - 2
    note = _emptied_note(ann, "label_issue", 0).replace("\\", "")
    suggested = ds.class_names[int(result.labels.suggested_label[theirs])]
    assert note.startswith(f"{BOB} relabelled to {suggested} {ds.file_name(theirs)}.")
    assert "No flagged suspect is left" in note
