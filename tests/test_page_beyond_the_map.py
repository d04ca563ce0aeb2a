"""The page on a dataset with more images than its map draws (the scan's map sample), and on a folder of shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cleaner.cli import scan
from cleaner.decisions.records import cleaned_npz
from cleaner.io.dataset import load_npz, npz_bytes
from cleaner.io.map_sample import map_sample_path, read_map_sample
from cleaner.io.shards import load_sharded
from cleaner.io.sidecar import read_sidecar, sidecar_path
from cleaner.issues.ranking import worst
from cleaner.issues.registry import WORST
from cleaner.issues.review import pending_rows
from cleaner.issues.suspects import scores_from_graph
from cleaner.server.config import ENV_MAP_LIMIT
from cleaner.ui import cache

from .test_shards import clustered, write_shards

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
LIMIT = 300


@pytest.fixture
def map_limit(monkeypatch):
    """CLEANER_MAP_LIMIT=300 for this test's page; the server's settings are read again before and after."""
    monkeypatch.setenv(ENV_MAP_LIMIT, str(LIMIT))
    cache._settings.clear()
    yield LIMIT
    monkeypatch.delenv(ENV_MAP_LIMIT)
    cache._settings.clear()


def _noisy(folder: Path) -> Path:
    """1,000 rows in 5 classes: 150 pairs of duplicates and 100 flipped labels, so more images are flagged than the
    map limit and the sample holds the most suspect of them."""
    rng = np.random.default_rng(3)
    n, classes = 1000, 5
    centres = rng.normal(0, 6, size=(classes, 12))
    true = np.arange(n) % classes
    emb = (centres[true] + rng.normal(0, 1, size=(n, 12))).astype(np.float32)
    labels = true.copy()
    flip = rng.choice(n, 100, replace=False)
    labels[flip] = (labels[flip] + 1) % classes
    dup = rng.choice(n, 300, replace=False)
    emb[dup[:150]] = emb[dup[150:]]
    folder.mkdir(parents=True, exist_ok=True)
    npz = folder / "big.npz"
    paths = np.array([str(folder / f"img_{i:04d}.png") for i in range(n)])
    npz.write_bytes(npz_bytes(emb, np.array([f"class{c}" for c in labels]), paths))
    return npz


def _open(source: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.radio(key="data_source").set_value("Server folder")
    at.run()
    at.selectbox(key="server_npz").set_value(source)
    at.run()
    assert not at.exception, at.exception
    return at


def _shown(elements) -> str:
    return "\n".join(e.value.replace("\\", "") for e in elements)


def _work(at: AppTest):
    per = at.session_state["cleaner_work"]
    return per[list(per)[-1]]


def test_a_dataset_above_the_map_limit_shows_the_scans_sample_and_the_queue_covers_every_image(allowed_root, map_limit):
    npz = _noisy(allowed_root / "beyond_the_map")
    assert scan.main([str(npz), "--out", str(npz.with_name("report.csv")), "--precompute", "--map-limit", "300"]) == 0
    data = load_npz(npz)
    graph = read_sidecar(sidecar_path(npz), data.embedding_digest, data.n, 20, "cosine", 1 << 30).graph
    result = scores_from_graph(data, graph)
    flagged = int(worst(*result.all()).flagged.sum())
    assert flagged > LIMIT  # the sample is the most suspect flagged images, and some flagged ones are off the map
    sample = read_map_sample(map_sample_path(npz), data.embedding_digest, data.n, 1 << 30)

    at = _open(str(npz.resolve()))
    caption = _shown(at.caption)
    assert (
        f"The map shows a sample of {LIMIT} of 1,000 images: the {LIMIT} most suspect of the {flagged} flagged images"
        in caption
    )
    assert "cover all 1,000" in caption and "selects sampled images only" in caption
    drawn = list(at.session_state["cleaner_map_drawn"].values())
    assert [p.n for p in drawn] == [LIMIT]  # the browser gets the sampled points only

    # The queue covers every flagged image: an order whose first card is not on the map.
    on_map = set(sample.rows.tolist())
    orders = [s.name for s in result.all()] + [WORST]
    off_map = [(by, int(q[0])) for by in orders if len(q := pending_rows(result, by, [])) and int(q[0]) not in on_map]
    assert off_map, "every order starts with a sampled image"
    by, row = off_map[0]
    at.radio(key="review_view").set_value("Review queue")
    at.run()
    at.selectbox(key="queue_order").set_value(by)
    at.run()
    at.button(key=f"q_excl_{row}").click()
    at.run()
    assert not at.exception, at.exception
    work = _work(at)
    exclusions = work.decision_files()[0].splitlines()
    assert exclusions == [str(data.image_paths[row])]
    cleaned = load_npz(cleaned_npz(data, work.decisions))
    assert cleaned.n == data.n - 1 and str(data.image_paths[row]) not in cleaned.image_paths.tolist()


def test_above_the_map_limit_without_a_sample_the_page_says_what_to_run(allowed_root, map_limit):
    npz = _noisy(allowed_root / "beyond_the_map_unscanned")
    at = _open(str(npz.resolve()))
    info = _shown(at.info)
    assert "big.npz has 1,000 images, more than the map draws (300" in info
    assert "python -m cleaner scan big.npz --out report.csv --precompute --map-limit 300" in [c.value for c in at.code]
    digest = load_npz(npz).digest[:12]
    drawn = at.session_state["cleaner_map_drawn"] if "cleaner_map_drawn" in at.session_state else {}
    assert not any(digest in key for key in drawn)  # no map of its rows is drawn


def test_a_folder_of_shards_on_the_server_opens_as_one_dataset(allowed_root):
    emb, labels, paths = clustered(n=90, dims=8, classes=3, seed=21)
    folder = allowed_root / "sharded_team" / "embeddings"
    write_shards(folder, emb, labels, paths, shards=3)
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.radio(key="data_source").set_value("Server folder")
    at.run()
    options = at.selectbox(key="server_npz").options
    shown = str(folder.resolve()) + "/"
    assert shown in options and not any("batch_0001" in o for o in options)  # the folder, not its shards
    at.selectbox(key="server_npz").set_value(shown)
    at.run()
    assert not at.exception, at.exception
    header = next(t.value for t in at.text if " · " in t.value and "-D embeddings" in t.value)
    assert header.startswith("embeddings · 90 images · 8-D embeddings · 3 classes")
    assert _work(at).dataset.digest == load_sharded(folder).digest


def test_a_shard_that_disagrees_is_named_in_one_message(allowed_root):
    emb, labels, paths = clustered(n=90, dims=8, classes=3, seed=22)
    labels[60:] = np.where(labels[60:] == "class2", "Class2", labels[60:])  # the last shard spells a class otherwise
    folder = allowed_root / "sharded_bad" / "embeddings"
    write_shards(folder, emb, labels, paths, shards=3)
    at = _open(str(folder.resolve()) + "/")
    errors = _shown(at.error)
    assert "Could not load embeddings: shard batch_0002.npz disagrees with batch_0000.npz" in errors
    assert "it has labels the first shard lacks ('Class2'); it lacks labels the first shard has ('class2')" in errors
    assert len(at.error) == 1


def test_a_box_on_the_sampled_map_selects_sampled_images_and_the_gallery_says_so():
    from cleaner.ui import map_panel
    from cleaner.ui.map.events import MapEvent
    from cleaner.ui.state import DatasetWork

    emb, labels, paths = clustered(n=60, dims=4, classes=3, seed=23)
    data = load_npz(npz_bytes(emb, labels, paths))
    work = DatasetWork(data)
    shown = np.array([5, 17, 42, 50])  # the map's points 0..3 are these dataset rows

    def on_event(event: MapEvent) -> None:  # as the page wires it: points -> dataset rows, then the selection
        map_panel._on_map_event(work, 3, map_panel.dataset_event(event, shown), len(shown))

    on_event(MapEvent("box", "replace", np.array([0, 2])))
    assert work.selection.rows == (5, 42)
    assert "box on the 3D map: 2 images (of the 4 sampled images the map shows, not of all 60)" == (
        work.selection.description
    )
    on_event(MapEvent("lasso", "add", np.array([3])))
    assert work.selection.rows == (5, 42, 50)
    # Marks go back to the points: selected rows off the map are simply not drawn.
    assert map_panel.drawn_positions([5, 6, 50], shown).tolist() == [0, 3]
