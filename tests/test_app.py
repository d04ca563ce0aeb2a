"""The page through streamlit.testing.v1.AppTest: what a user sees after each action."""

import csv
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest

from cleaner.decisions.records import parse_decisions
from cleaner.graph.distance import resolved_metric
from cleaner.graph.neighbours import neighbour_graph
from cleaner.io.dataset import load_npz, npz_bytes
from cleaner.issues.label import class_confusion, rescore_label_issues
from cleaner.issues.review import pending_rows
from cleaner.issues.suspects import scores_from_graph
from cleaner.ui import cache

from .conftest import clustered_arrays

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


def start_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    return "\n".join([t.value for t in at.text] + [m.value for m in at.markdown])


def shown(element) -> str:
    """What the user reads in an alert: the Markdown with its escapes resolved."""
    return element.value.replace("\\", "")


def header(at: AppTest) -> str:
    """The one-line dataset header: name · images · dims · classes · decisions."""
    return next(t.value for t in at.text if " · " in t.value and "-D embeddings" in t.value)


def select_class(at: AppTest, name: str) -> None:
    at.selectbox(key="select_class").set_value(name)
    at.button(key="btn_class").click()
    at.run()


def work(at: AppTest, digest: str | None = None):
    """The session's work on the current (or given) dataset."""
    per = at.session_state["cleaner_work"]
    return per[digest or list(per)[-1]]


def demo():
    return cache.demo_dataset(str(cache.settings().demo_dir))


def demo_result():
    """The demo's scores computed here, independently of the page's caches."""
    data = demo()
    return scores_from_graph(
        data, neighbour_graph(data.embeddings, k=20, metric=resolved_metric("auto", data.embeddings))
    )


def test_demo_loads_with_map_and_summary():
    at = start_app()
    data = demo()
    assert header(at).startswith(f"{data.name} · 1,797 images · 64-D embeddings · 10 classes · 0 excluded")
    assert "Click a point or draw a box or lasso on the map" in "\n".join(i.value for i in at.info)
    result = demo_result()
    for scores in result.all():
        assert scores.summary in texts(at)


def test_select_class_fills_gallery_and_tick_excludes():
    at = start_app()
    select_class(at, "3")
    assert "Selected: 183 images" in texts(at)
    assert len(at.get("image")) == 24  # first page
    boxes = [c for c in at.checkbox if c.label == "Exclude"]
    assert len(boxes) == 24 and not any(c.value for c in boxes)
    boxes[0].check()
    boxes[2].check()
    at.run()
    excl = work(at).decisions
    assert len(excl) == 2
    lines = excl.exclusion_text().splitlines()  # exactly what the "Exclusion list" download serves
    assert all(line.endswith(".png") and "label_3" in line for line in lines)
    # a rerun from elsewhere on the page keeps the ticks
    at.button(key="btn_clear").click()
    at.run()
    select_class(at, "3")
    boxes = [c for c in at.checkbox if c.label == "Exclude"]
    assert boxes[0].value and not boxes[1].value and boxes[2].value
    assert "· 2 excluded ·" in header(at)


def test_exclude_all_on_page_then_unexclude_one():
    at = start_app()
    select_class(at, "7")
    at.button(key="btn_excl_page").click()
    at.run()
    decisions = work(at).decisions
    assert decisions.count("exclude") == 24
    boxes = [c for c in at.checkbox if c.label == "Exclude"]
    assert all(c.value for c in boxes)
    boxes[5].uncheck()
    at.run()
    assert decisions.count("exclude") == 23 and decisions.count("keep") == 0


def test_paging_through_a_large_selection():
    at = start_app()
    select_class(at, "1")
    at.number_input(key=f"page_{demo().digest[:12]}").set_value(2)
    at.run()
    data = demo()
    second_page = np.flatnonzero(data.label_codes == data.class_names.index("1"))[24:48]
    names = [t.value.split("\n")[1] for t in at.text if t.value.startswith("label:")]
    assert sorted(names) == sorted(data.file_name(r) for r in second_page)  # the grid lists column by column


def _write_images(root: Path, n: int) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = root / f"img_{i:03d}.png"
        Image.new("RGB", (12, 12), (i % 255, 80, 160)).save(path)
        paths.append(str(path))
    return paths


def test_upload_valid_npz_shows_its_map(allowed_root):
    emb, labels = clustered_arrays(n_per_class=20, n_classes=3, dims=8)
    paths = _write_images(allowed_root / "upload_ok", len(emb))
    at = start_app()
    at.radio(key="data_source").set_value("Upload an NPZ")
    at.run()
    at.file_uploader(key="npz_upload").set_value(
        ("mine.npz", npz_bytes(emb, labels, np.array(paths)), "application/octet-stream")
    )
    at.run()
    assert not at.exception
    assert header(at).startswith("mine.npz · 60 images · 8-D embeddings · 3 classes")
    select_class(at, "2")
    assert "Selected: 20 images" in texts(at)
    assert not any(t.value.startswith("⚠") for t in at.text)  # every image readable


def test_upload_broken_npz_shows_error_and_app_keeps_working():
    at = start_app()
    at.radio(key="data_source").set_value("Upload an NPZ")
    at.run()
    at.file_uploader(key="npz_upload").set_value(("broken.npz", b"this is not a zip", "application/octet-stream"))
    at.run()
    assert not at.exception
    assert any("Could not load broken.npz" in shown(e) and "not an NPZ" in shown(e) for e in at.error)
    at.radio(key="data_source").set_value("Demo (digits)")
    at.run()
    assert "1,797 images" in header(at)


def test_upload_with_wrong_shapes_explains_the_problem():
    emb, labels = clustered_arrays()
    buf = io.BytesIO()
    np.savez(buf, embeddings=emb, labels=labels[:-3], image_paths=np.array(["/a.png"] * len(emb)))
    at = start_app()
    at.radio(key="data_source").set_value("Upload an NPZ")
    at.run()
    at.file_uploader(key="npz_upload").set_value(("short.npz", buf.getvalue(), "application/octet-stream"))
    at.run()
    assert any("'labels' has 87 entries but 'embeddings' has 90 rows" in shown(e) for e in at.error)


def test_missing_image_shows_placeholder_with_reason(allowed_root):
    emb, labels = clustered_arrays(n_per_class=10, n_classes=2, dims=4)
    paths = _write_images(allowed_root / "some_missing", len(emb))
    Path(paths[0]).unlink()
    paths[1] = "/etc/passwd"
    at = start_app()
    at.radio(key="data_source").set_value("Upload an NPZ")
    at.run()
    at.file_uploader(key="npz_upload").set_value(("m.npz", npz_bytes(emb, labels, np.array(paths)), "x"))
    at.run()
    select_class(at, "0")
    warnings = [t.value for t in at.text if t.value.startswith("⚠")]
    assert "⚠ file not found" in warnings
    assert "⚠ outside the folders this server may read" in warnings
    assert not at.exception


def test_resume_from_uploaded_exclusion_list():
    at = start_app()
    data = demo()
    fives = np.flatnonzero(data.label_codes == data.class_names.index("5"))
    listed = [str(data.image_paths[r]) for r in fives[[0, 2, 3]]]
    listing = "\n".join(listed + ["/not/in/dataset.png"]) + "\n"
    at.file_uploader(key="decisions_upload").set_value(("images_to_exclude.txt", listing.encode(), "text/plain"))
    at.run()
    assert work(at).decisions.paths("exclude") == listed
    assert any(
        "Restored 3 exclusions, 0 relabels, 0 kept marks" in shown(w) and "Skipped 1 line" in shown(w)
        for w in at.warning
    )
    select_class(at, "5")
    ticked = {int(c.key.rsplit("_", 1)[1]) for c in at.checkbox if c.label == "Exclude" and c.value}
    assert ticked == set(fives[[0, 2, 3]].tolist())
    at.button(key="btn_clear").click()
    at.run()
    assert work(at).decisions.count("exclude") == 3  # survives further reruns


def test_resume_from_decisions_csv_restores_relabels_and_kept_marks():
    at = start_app()
    data = demo()
    rows = [0, 1, 2, 3]
    paths = [str(data.image_paths[r]) for r in rows]
    other = next(n for n in data.class_names if n != data.label_text(2))
    table = (
        "image_path,decision,reason,old_label,new_label,decided_by\n"
        f"{paths[0]},exclude,blurry,,,\n{paths[1]},keep,fine,,,\n"
        f"{paths[2]},relabel,neighbours,{data.label_text(2)},{other},\n"
        f"{paths[3]},relabel,typo,{data.label_text(3)},no-such-class,\n"
    )
    at.file_uploader(key="decisions_upload").set_value(("cleaner_decisions.csv", table.encode(), "text/csv"))
    at.run()
    decisions = work(at).decisions
    assert decisions.paths("exclude") == paths[:1] and decisions.paths("keep") == paths[1:2]
    assert decisions.get(paths[2]).new_label == other and paths[3] not in decisions
    assert any(
        "Restored 1 exclusion, 1 relabel, 1 kept mark" in shown(w) and "Skipped 1 line" in shown(w) for w in at.warning
    )
    # the cleaned NPZ carries the new label and leaves the excluded image out
    cleaned = load_npz(decisions_npz(at))
    assert cleaned.n == data.n - 1 and paths[0] not in cleaned.image_paths.tolist()
    new_row = cleaned.image_paths.tolist().index(paths[2])
    assert cleaned.label_text(new_row) == other
    assert parse_decisions(decisions.decisions_csv()).decisions == decisions.by_path  # the round trip is exact


def decisions_npz(at: AppTest) -> bytes:
    """What "Download cleaned NPZ" serves, from the session's live decisions."""
    from cleaner.decisions.records import cleaned_npz

    return cleaned_npz(demo(), work(at).decisions)


def test_two_sessions_are_isolated():
    alice, bob = start_app(), start_app()
    select_class(alice, "0")
    [c for c in alice.checkbox if c.label == "Exclude"][0].check()
    alice.run()
    bob.run()
    assert "· 1 excluded ·" in header(alice)
    assert "· 0 excluded ·" in header(bob)
    assert len(work(bob).decisions) == 0


def test_server_folder_lists_only_allowed_npz_files(allowed_root, tmp_path):
    emb, labels = clustered_arrays(n_per_class=15, n_classes=2, dims=4)
    paths = _write_images(allowed_root / "server_images", len(emb))
    folder = allowed_root / "server_npz"
    folder.mkdir(exist_ok=True)
    (folder / "team.npz").write_bytes(npz_bytes(emb, labels, np.array(paths)))
    outside = tmp_path / "secret.npz"
    outside.write_bytes(npz_bytes(emb, labels, np.array(paths)))
    (folder / "link_out.npz").symlink_to(outside)  # a link that leads out of the allowed folder
    at = start_app()
    at.radio(key="data_source").set_value("Server folder")
    at.run()
    options = at.selectbox(key="server_npz").options
    assert any(o.endswith("team.npz") for o in options)
    assert not any("secret" in o or "link_out" in o for o in options)
    at.selectbox(key="server_npz").set_value(next(o for o in options if o.endswith("team.npz")))
    at.run()
    assert header(at).startswith("team.npz · 30 images")


def test_server_folder_is_walked_again_only_when_a_folder_changed(tmp_path, monkeypatch):
    from cleaner.io import server_files
    from cleaner.server.config import load_settings
    from cleaner.ui import data_source

    root = tmp_path / "team"
    (root / "images").mkdir(parents=True)
    for i in range(50):
        (root / "images" / f"{i}.png").write_bytes(b"")
    (root / "a.npz").write_bytes(b"")
    monkeypatch.setenv("CLEANER_ALLOWED_ROOTS", str(root))
    cfg = load_settings()
    walks = []
    real_walk = server_files._walk
    monkeypatch.setattr(server_files, "_walk", lambda roots: walks.append(roots) or real_walk(roots))
    names = lambda: [p.name for p in data_source.allowed_npz_files(cfg)]  # noqa: E731
    assert names() == ["a.npz"]
    assert names() == ["a.npz"] and len(walks) == 1  # nothing changed: not walked again
    (root / "images" / "b.npz").write_bytes(b"")  # a new file in a subfolder
    assert names() == ["a.npz", "b.npz"]
    (root / "a.npz").unlink()
    assert names() == ["b.npz"]
    (root / "more").mkdir()
    (root / "more" / "c.npz").write_bytes(b"")
    assert names() == ["b.npz", "c.npz"]
    assert len(walks) == 4


def test_an_old_listing_is_walked_again_in_the_background(tmp_path, monkeypatch):
    """Where folder times say nothing changed (coarse file systems), the listing is walked again after its maximum
    age on a thread of its own: the page run that finds it old gets the listing it had, without waiting."""
    import threading

    from cleaner.io import server_files
    from cleaner.server.config import load_settings
    from cleaner.ui import data_source

    root = tmp_path / "coarse"
    root.mkdir()
    (root / "a.npz").write_bytes(b"")
    monkeypatch.setenv("CLEANER_ALLOWED_ROOTS", str(root))
    cfg = load_settings()
    names = lambda: [p.name for p in data_source.allowed_npz_files(cfg)]  # noqa: E731
    assert names() == ["a.npz"]
    before = root.stat()
    (root / "b.npz").write_bytes(b"")
    os.utime(root, ns=(before.st_atime_ns, before.st_mtime_ns))  # a file system that did not record the change
    assert names() == ["a.npz"]  # young listing, unchanged folder times: not walked
    release = threading.Event()
    real_walk = server_files._walk
    monkeypatch.setattr(server_files, "_walk", lambda roots: release.wait(30) and real_walk(roots))
    monkeypatch.setattr(server_files, "LISTING_MAX_AGE_S", 0.0)
    assert names() == ["a.npz"]  # old: the walk starts on its own thread, and this run is not held up by it
    assert names() == ["a.npz"]  # one walk at a time: still the listing it had
    walkers = [t for t in threading.enumerate() if t.name == "cleaner-list-npz"]
    assert len(walkers) == 1
    release.set()
    walkers[0].join(30)
    monkeypatch.setattr(server_files, "LISTING_MAX_AGE_S", 3600.0)
    assert names() == ["a.npz", "b.npz"]


def test_sessions_arriving_together_wait_for_one_walk(tmp_path, monkeypatch):
    import threading
    import time

    from cleaner.io import server_files

    root = tmp_path / "shared"
    root.mkdir()
    (root / "a.npz").write_bytes(b"")
    walks = []
    real_walk = server_files._walk

    def slow_walk(roots):
        walks.append(roots)
        time.sleep(0.3)
        return real_walk(roots)

    monkeypatch.setattr(server_files, "_walk", slow_walk)
    found: list[list[str]] = []
    sessions = [
        threading.Thread(target=lambda: found.append([p.name for p in server_files.allowed_npz_files((root,))]))
        for _ in range(4)
    ]
    for t in sessions:
        t.start()
    for t in sessions:
        t.join(30)
    assert found == [["a.npz"]] * 4 and len(walks) == 1


def test_a_server_folder_that_appears_later_is_listed(tmp_path, monkeypatch):
    from cleaner.server.config import load_settings
    from cleaner.ui import data_source

    root = tmp_path / "not_mounted_yet"
    monkeypatch.setenv("CLEANER_ALLOWED_ROOTS", str(root))
    cfg = load_settings()
    assert data_source.allowed_npz_files(cfg) == []
    root.mkdir()
    (root / "a.npz").write_bytes(b"")
    assert [p.name for p in data_source.allowed_npz_files(cfg)] == ["a.npz"]


def test_path_prefix_remap_finds_moved_images(allowed_root):
    emb, labels = clustered_arrays(n_per_class=10, n_classes=2, dims=4)
    real = _write_images(allowed_root / "moved_here", len(emb))
    recorded = [p.replace(str(allowed_root / "moved_here"), "/home/alice/data") for p in real]
    at = start_app()
    at.radio(key="data_source").set_value("Upload an NPZ")
    at.run()
    at.file_uploader(key="npz_upload").set_value(("moved.npz", npz_bytes(emb, labels, np.array(recorded)), "x"))
    at.run()
    select_class(at, "0")
    assert any(t.value.startswith("⚠") for t in at.text)  # not found before the remap
    at.text_input(key="remap_old").input("/home/alice/data")
    at.text_input(key="remap_new").input(str(allowed_root / "moved_here"))
    at.run()
    assert not any(t.value.startswith("⚠") for t in at.text)


def _queue_cards(at: AppTest) -> list[int | None]:
    """The rows on the queue's cards in slot order (None: an emptied place); the page shows exactly those cards."""
    slots = work(at).queue_slots["worst"]
    in_page = {int(b.key.rsplit("_", 1)[1]) for b in at.button if b.key and b.key.startswith("q_keep_")}
    assert in_page == {r for r in slots if r is not None}
    return slots


def _click(at: AppTest, key: str) -> None:
    at.button(key=key).click()
    at.run()


def test_review_queue_exclude_keep_relabel_and_undo():
    at = start_app()
    at.radio(key="review_view").set_value("Review queue")
    at.run()
    data, result = demo(), demo_result()
    queue = pending_rows(result, "worst", []).tolist()
    assert any(f"{len(queue):,} flagged samples left to review" in m.value for m in at.markdown)
    cards = _queue_cards(at)
    assert cards == queue[:6]
    # every card says why, with the neighbours' label
    n_label = sum(bool(result.labels.flagged[r]) for r in cards)
    assert sum(t.value.startswith("label issue") and "of its neighbours say" in t.value for t in at.text) == n_label
    first = cards[0]
    _click(at, f"q_excl_{first}")
    # The queue learns: the excluded image no longer votes, its neighbours are re-scored.
    graph = neighbour_graph(data.embeddings, k=20, metric=resolved_metric("auto", data.embeddings))
    learned = result.with_scores(rescore_label_issues(graph, data.label_codes, 10, excluded=[first]))
    left = pending_rows(learned, "worst", [first]).tolist()
    fillers = iter(r for r in left if r not in cards)
    expected = [r if r in left else next(fillers, None) for r in cards]
    while expected and expected[-1] is None:
        expected.pop()
    after = _queue_cards(at)
    assert after == expected  # the other cards stay put; an empty place stays empty when no suspect is left
    assert all(a == c for a, c in zip(after[1:], cards[1:]) if c in left)
    assert any(f"{len(left):,} flagged samples left to review" in m.value for m in at.markdown)
    decisions = work(at).decisions
    assert decisions.paths("exclude") == [str(data.image_paths[first])]
    assert decisions.get(str(data.image_paths[first])).reason.startswith(("label issue", "outlier", "near-duplicate"))
    kept = after[1]
    _click(at, f"q_keep_{kept}")
    assert kept not in _queue_cards(at) and decisions.count("exclude") == 1 and decisions.count("keep") == 1
    relabelled = next(r for r in _queue_cards(at) if f"q_relabel_{r}" in {b.key for b in at.button})
    _click(at, f"q_relabel_{relabelled}")
    suggested = data.class_names[int(result.labels.suggested_label[relabelled])]
    path = str(data.image_paths[relabelled])
    assert decisions.get(path).new_label == suggested
    assert list(csv.reader(io.StringIO(decisions.relabel_csv()))) == [
        ["image_path", "old_label", "new_label"],
        [path, data.label_text(relabelled), suggested],
    ]
    _click(at, "btn_undo")
    assert path not in decisions and relabelled in pending_rows(learned, "worst", work(at).decided_rows())


def test_the_first_decision_rescores_only_the_rows_it_touches(monkeypatch):
    """The queue learns from the scan every session shares: its first decision re-scores the decided image and the
    images it votes for, never every image again (a full pass per session is what ten users at once would pay)."""
    from cleaner.issues import label as scores
    from cleaner.issues.label_votes import rows_to_update

    scored: list[int] = []  # rows each re-scoring pass computed
    score_rows = scores.score_rows
    monkeypatch.setattr(
        scores, "score_rows", lambda indices, *args: scored.append(len(indices)) or score_rows(indices, *args)
    )
    at = start_app()
    at.radio(key="review_view").set_value("Review queue")
    at.run()
    first = _queue_cards(at)[0]
    scored.clear()  # whatever the shared scan computed before
    _click(at, f"q_excl_{first}")
    data = demo()
    graph = neighbour_graph(data.embeddings, k=20, metric=resolved_metric("auto", data.embeddings))
    changed = np.zeros(len(data.label_codes), dtype=bool)
    changed[first] = True
    touched = rows_to_update(graph.indices[:, : scores.LABEL_K], changed)
    assert scored == [len(touched)] and len(touched) < len(data.label_codes) / 10
    # and what it learned is what a full re-scoring gives
    full = rescore_label_issues(graph, data.label_codes, len(data.class_names), excluded=[first])
    learned = work(at).learned_labels
    np.testing.assert_allclose(learned.labels.score, full.score, atol=1e-7)
    # and the scan every session shares is untouched by this session's decision
    untouched = rescore_label_issues(graph, data.label_codes, len(data.class_names))
    np.testing.assert_allclose(learned.scan.score, untouched.score, atol=1e-7)
    assert not learned.scan.excluded.any()


def test_the_queue_learns_again_from_the_new_scan_when_the_distance_changes():
    """Scores learned on one neighbour graph are never patched with rows of another: after a change of distance the
    queue's scores are the new graph's, with the decisions made before still applied."""
    at = start_app()
    at.radio(key="review_view").set_value("Review queue")
    at.run()
    first = _queue_cards(at)[0]
    _click(at, f"q_excl_{first}")
    data = demo()
    auto = resolved_metric("auto", data.embeddings)
    other = "cosine" if auto == "euclidean" else "euclidean"
    at.selectbox(key="metric").set_value(other)
    at.run()
    assert not at.exception, at.exception
    graph = neighbour_graph(data.embeddings, k=20, metric=other)
    expected = rescore_label_issues(graph, data.label_codes, len(data.class_names), excluded=[first])
    np.testing.assert_allclose(work(at).learned_labels.labels.score, expected.score, atol=1e-6)


def test_class_confusion_table_matches_the_scores():
    at = start_app()
    at.radio(key="review_view").set_value("Class confusion")
    at.run()
    data, result = demo(), demo_result()
    pairs = class_confusion(result.labels)
    table = at.dataframe[0].value
    assert list(table["images"]) == [p.count for p in pairs]
    assert list(table["given label"]) == [data.class_names[p.given] for p in pairs]


def test_hostile_labels_and_paths_show_literally(allowed_root):
    """A label like <img onerror> or **bold** is shown as typed, never run or formatted."""
    emb, codes = clustered_arrays(n_per_class=12, n_classes=2, dims=4)
    names = np.array(["<img src=x onerror=alert(1)>", "**bold**"])[codes]
    names[0] = "**bold**"  # one planted label issue: the queue offers "Relabel to <img ...>"
    paths = _write_images(allowed_root / "hostile", len(emb))
    at = start_app()
    at.radio(key="data_source").set_value("Upload an NPZ")
    at.run()
    at.file_uploader(key="npz_upload").set_value(("<b>x</b>.npz", npz_bytes(emb, names, np.array(paths)), "x"))
    at.run()
    select_class(at, "<img src=x onerror=alert(1)>")
    assert any(t.value.startswith("label: <img src=x onerror=alert(1)>") for t in at.text)
    assert header(at).startswith("<b>x</b>.npz · 24 images")
    at.radio(key="review_view").set_value("Review queue")
    at.run()
    relabel = [b for b in at.button if b.key and b.key.startswith("q_relabel_")]
    assert relabel and relabel[0].label == r"Relabel to \<img src=x onerror=alert\(1\)\>"  # Markdown shows it as typed


def test_choices_survive_a_visit_to_another_data_source():
    at = start_app()
    at.radio(key="review_view").set_value("Review queue").run()
    at.selectbox(key="queue_order").set_value("outlier").run()
    at.radio(key="data_source").set_value("Upload an NPZ").run()  # no dataset: the queue is not drawn
    at.radio(key="data_source").set_value("Demo (digits)").run()
    assert at.radio(key="review_view").value == "Review queue"
    assert at.selectbox(key="queue_order").value == "outlier"


def test_a_widget_drawn_afresh_by_the_browser_starts_at_the_users_choice():
    """A browser that draws a widget afresh starts it at the default the page sent and reports that value as a
    change. The default is the user's own choice, never the widget's minimum or first option, or ten sessions at
    once would find their map settings reset and a new map computed."""
    at = start_app()
    at.slider(key="n_neighbors").set_value(10).run()
    at.select_slider(key="min_dist").set_value(0.25).run()
    at.selectbox(key="color_by").set_value("outlier").run()
    at.radio(key="review_view").set_value("Class confusion").run()
    at.run()  # a later run, with nothing changed
    assert not at.exception, at.exception
    assert list(at.slider(key="n_neighbors").proto.default) == [10]
    assert at.slider(key="n_neighbors").value == 10
    min_dist = at.select_slider(key="min_dist")
    assert [min_dist.options[int(i)] for i in min_dist.proto.default] == ["0.25"] and min_dist.value == 0.25
    color_by = at.selectbox(key="color_by")
    assert color_by.proto.default == color_by.options.index(color_by.format_func("outlier"))
    assert color_by.value == "outlier"
    review = at.radio(key="review_view")
    assert review.proto.default == review.options.index("Class confusion") and review.value == "Class confusion"


def test_the_data_source_is_sent_as_the_users_choice():
    """The Data radio, like every choice widget, sends the user's choice as its default: a browser drawing it afresh
    must not put a session that chose another source back on the demo."""
    at = start_app()
    at.radio(key="data_source").set_value("Upload an NPZ").run()
    at.run()
    radio = at.radio(key="data_source")
    assert radio.value == "Upload an NPZ" and radio.proto.default == radio.options.index("Upload an NPZ")


def test_the_class_box_keeps_the_users_class_when_drawn_afresh_or_left_and_come_back():
    """Issue 29 (item 5): under load a session found its Class box back at another class than it had chosen. The box
    sends the user's class as its default (a browser drawing it afresh during a whole-page run starts it there), and
    a visit to the review queue, which does not draw it, does not lose it."""
    at = start_app()
    names = list(demo().class_names)
    chosen = names[-3]  # not the first option, which a box without a default falls back to
    select_class(at, chosen)
    at.run()  # a later run, with nothing changed (the maps arriving rerun the whole page)
    box = at.selectbox(key="select_class")
    assert box.proto.default == names.index(chosen) and box.value == chosen
    at.radio(key="review_view").set_value("Review queue").run()  # the class box is not drawn here
    at.radio(key="review_view").set_value("Selected images").run()
    box = at.selectbox(key="select_class")
    assert box.value == chosen and box.proto.default == names.index(chosen)
    assert f"class {chosen!r}" in texts(at)  # the selection it made is still the one shown


def test_queue_cards_show_their_nearest_neighbours_with_labels():
    at = start_app()
    at.radio(key="review_view").set_value("Review queue").run()
    data = demo()
    graph = neighbour_graph(data.embeddings, k=20, metric=resolved_metric("auto", data.embeddings))
    first = pending_rows(demo_result(), "worst", [])[0]
    labels = [data.label_text(r) for r in graph.indices[first, :6]]
    low, high = (f"{d:.2f}" for d in (graph.distances[first, :6].min(), graph.distances[first, :6].max()))
    counts = {label: labels.count(label) for label in labels}  # first seen first among equal counts
    ranked = sorted(counts, key=lambda label: -counts[label])
    expected = " · ".join(f"{label} ×{counts[label]}" for label in ranked)
    expected += f" · distance {low}" if low == high else f" · distance {low}–{high}"
    shown_texts = [t.value for t in at.text]
    start = next(i for i, t in enumerate(shown_texts) if t == data.file_name(first))
    assert shown_texts[start + 2] == expected  # one line after its file name and its reasons


def test_a_bad_setting_is_explained_in_the_page(monkeypatch):
    monkeypatch.setenv("CLEANER_MAX_ROWS", "many")
    cache._settings.clear()
    try:
        at = AppTest.from_file(APP, default_timeout=240).run()
        assert not at.exception
        assert any("configuration is invalid" in shown(e) and "CLEANER_MAX_ROWS" in shown(e) for e in at.error)
    finally:
        monkeypatch.undo()
        cache._settings.clear()


def test_thorough_ranking_is_a_choice_and_ranks_with_the_probe():
    at = start_app()
    at.radio(key="ranking").set_value("Thorough: votes and a linear probe").run()
    assert not at.exception
    assert any("linear probe" in t.value for t in at.text)  # the summary names what ranked the labels


def _upload(at: AppTest, name: str, data: bytes) -> None:
    at.radio(key="data_source").set_value("Upload an NPZ").run()
    at.file_uploader(key="npz_upload").set_value((name, data, "application/octet-stream")).run()


def test_an_image_check_is_kept_for_every_session_while_the_files_stay_the_same(allowed_root):
    emb, labels = clustered_arrays(n_per_class=10, n_classes=2, dims=4, seed=7)
    paths = _write_images(allowed_root / "checked_once", len(emb))
    Path(paths[3]).write_bytes(b"not an image")
    data = npz_bytes(emb, labels, np.array(paths))
    first = start_app()
    _upload(first, "checked.npz", data)
    first.radio(key="review_view").set_value("Review queue").run()
    first.button(key="btn_check_images").click().run()
    summary = "1 image cannot be read"
    assert any(summary in t.value for t in first.text)
    second = start_app()  # another visitor, or the same one after a reload
    _upload(second, "checked.npz", data)
    assert any(summary in t.value for t in second.text)  # no second check needed
    Path(paths[5]).write_bytes(b"broken since")
    third = start_app()
    _upload(third, "checked.npz", data)
    assert not any(summary in t.value for t in third.text)  # a file changed: the old result is not shown
    assert any("image files not checked yet" in t.value for t in third.text)
