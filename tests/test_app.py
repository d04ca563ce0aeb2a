"""The page through streamlit.testing.v1.AppTest: what a user sees after each action."""
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from cleaner.dataset import npz_bytes

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


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def select_class(at: AppTest, name: str) -> None:
    at.selectbox(key="select_class").set_value(name)
    at.button(key="btn_class").click()
    at.run()


def exclusions(at: AppTest, digest: str):
    return at.session_state["cleaner_per_dataset"][digest]["exclusions"]


def current_digest(at: AppTest) -> str:
    per = at.session_state["cleaner_per_dataset"]
    return list(per)[-1]


def test_demo_loads_with_map_and_summary():
    at = start_app()
    assert metric(at, "Images") == "1,797"
    assert metric(at, "Classes") == "10"
    assert "Click a point in the 3D map" in "\n".join(i.value for i in at.info)
    # One map at a time: the 3D click component first, the 2D chart once chosen.
    assert at.radio(key="map_view").value.startswith("3D map") and not at.get("plotly_chart")
    at.radio(key="map_view").set_value("2D map: box or lasso select").run()
    assert len(at.get("plotly_chart")) == 1 and not at.exception


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
    digest = current_digest(at)
    excl = exclusions(at, digest)
    assert len(excl) == 2
    lines = excl.to_text().splitlines()  # exactly what "Download exclusion list" serves
    assert all(line.endswith(".png") and "label_3" in line for line in lines)
    # a rerun from elsewhere on the page keeps the ticks
    at.button(key="btn_clear").click()
    at.run()
    select_class(at, "3")
    boxes = [c for c in at.checkbox if c.label == "Exclude"]
    assert boxes[0].value and not boxes[1].value and boxes[2].value
    assert metric(at, "Excluded") == "2"


def test_exclude_all_on_page_then_unexclude_one():
    at = start_app()
    select_class(at, "7")
    at.button(key="btn_excl_page").click()
    at.run()
    digest = current_digest(at)
    assert len(exclusions(at, digest)) == 24
    boxes = [c for c in at.checkbox if c.label == "Exclude"]
    assert all(c.value for c in boxes)
    boxes[5].uncheck()
    at.run()
    assert len(exclusions(at, digest)) == 23


def test_paging_through_a_large_selection():
    at = start_app()
    select_class(at, "1")
    at.number_input(key=f"page_{current_digest(at)[:12]}").set_value(2)
    at.run()
    names = [t.value for t in at.text if t.value.startswith("label:")]
    assert len(names) == 24 and all("label: 1" in n for n in names)


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
    at.file_uploader(key="npz_upload").set_value(("mine.npz", npz_bytes(emb, labels, np.array(paths)), "application/octet-stream"))
    at.run()
    assert not at.exception
    assert metric(at, "Images") == "60"
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
    assert metric(at, "Images") == "1,797"


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
    digest = current_digest(at)
    demo_paths = [p for p in _demo_paths(at) if "label_5" in p][:3]
    listing = "\n".join(demo_paths + ["/not/in/dataset.png"]) + "\n"
    at.file_uploader(key="exclusion_upload").set_value(("images_to_exclude.txt", listing.encode(), "text/plain"))
    at.run()
    assert exclusions(at, digest).paths() == demo_paths
    assert any("Restored 3 exclusions" in shown(w) and "1 path is not in this dataset and was skipped" in shown(w) for w in at.warning)
    select_class(at, "5")
    ticked = [c.value for c in at.checkbox if c.label == "Exclude"]
    assert sum(ticked) >= 1
    at.button(key="btn_clear").click()
    at.run()
    assert len(exclusions(at, digest)) == 3  # survives further reruns


def _demo_paths(at: AppTest) -> list[str]:
    from cleaner import ui

    return ui._demo(str(ui.settings().demo_dir)).image_paths.tolist()


def test_two_sessions_are_isolated():
    alice, bob = start_app(), start_app()
    select_class(alice, "0")
    [c for c in alice.checkbox if c.label == "Exclude"][0].check()
    alice.run()
    bob.run()
    assert metric(alice, "Excluded") == "1"
    assert metric(bob, "Excluded") == "0"
    assert len(exclusions(bob, current_digest(bob))) == 0


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
    assert metric(at, "Images") == "30"


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


def _queue_rows(at: AppTest) -> set[int]:
    return {int(b.key.rsplit("_", 1)[1]) for b in at.button if b.key and b.key.startswith("q_keep_")}


def _click(at: AppTest, key: str) -> None:
    at.button(key=key).click()
    at.run()


def test_review_queue_exclude_keep_relabel_and_undo():
    at = start_app()
    at.radio(key="review_view").set_value("Review queue")
    at.run()
    assert any("7 flagged samples left to review" in m.value for m in at.markdown)
    shown = _queue_rows(at)
    assert len(shown) == 6
    # every card says why, with the neighbours' label
    assert sum(t.value.startswith("label issue") and "of its neighbours say" in t.value for t in at.text) == 6
    from cleaner import ui

    demo = ui._demo(str(ui.settings().demo_dir))
    first = min(shown, key=lambda r: -ui.cached_suspects(demo.digest, 20, "cosine", demo, None).labels.score[r])
    _click(at, f"q_excl_{first}")
    after = _queue_rows(at)
    assert first not in after and len(after) == 6  # Exclude moves on: the 7th suspect comes up
    assert any("6 flagged samples left to review" in m.value for m in at.markdown)
    excl = exclusions(at, demo.digest)
    assert excl.paths() == [str(demo.image_paths[first])]
    assert excl.reasons[excl.paths()[0]].startswith("label issue")
    kept = sorted(after)[0]
    _click(at, f"q_keep_{kept}")
    assert kept not in _queue_rows(at) and len(excl) == 1  # Keep leaves the queue and the list
    relabelled = sorted(_queue_rows(at))[0]
    _click(at, f"q_relabel_{relabelled}")
    assert list(excl.relabels) == [str(demo.image_paths[relabelled])] and "relabel" in excl.to_csv()
    _click(at, "btn_undo")
    assert not excl.relabels and relabelled in _queue_rows(at)


def test_color_by_score_and_class_confusion_view():
    at = start_app()
    for option in ("label_issue", "outlier", "near_duplicate", "worst"):
        at.selectbox(key="color_by").set_value(option)
        at.run()
        assert not at.exception
    at.radio(key="review_view").set_value("Class confusion")
    at.run()
    assert len(at.dataframe) == 1
    assert not at.exception


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
    assert any(t.value == "Dataset: <b>x</b>.npz" for t in at.text)
    at.radio(key="review_view").set_value("Review queue")
    at.run()
    relabel = [b for b in at.button if b.key and b.key.startswith("q_relabel_")]
    assert relabel and relabel[0].label == r"Relabel to \<img src=x onerror=alert\(1\)\>"  # Markdown shows it as typed
