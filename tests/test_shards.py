"""A dataset in shards (a folder of NPZ files) and the map sample of a dataset larger than the map: no dask here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cleaner.io.dataset import load_npz
from cleaner.io.dataset_types import DatasetError
from cleaner.io.map_sample import (
    MapSampleProblem,
    map_sample_bytes,
    map_sample_path,
    read_map_sample,
    sample_rows,
)
from cleaner.io.shards import is_sharded, list_shards, load_sharded
from cleaner.layout.layouts import LayoutParams

REPO = Path(__file__).resolve().parents[1]


def clustered(n: int = 600, dims: int = 16, classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, size=(classes, dims))
    labels = np.arange(n) % classes
    emb = (centres[labels] + rng.normal(0, 1, size=(n, dims))).astype(np.float32)
    names = np.array([f"class{c}" for c in labels])
    paths = np.array([f"/data/img_{i:05d}.jpg" for i in range(n)])
    return emb, names, paths


def write_shards(folder: Path, emb, labels, paths, shards: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    edges = np.linspace(0, len(emb), shards + 1).astype(int)
    out = []
    for s in range(shards):
        a, b = edges[s], edges[s + 1]
        path = folder / f"batch_{s:04d}.npz"
        np.savez_compressed(path, embeddings=emb[a:b], labels=labels[a:b], image_paths=paths[a:b])
        out.append(path)
    return out


def test_a_folder_of_shards_loads_as_one_dataset_in_file_name_order(tmp_path):
    emb, labels, paths = clustered()
    write_shards(tmp_path / "shards", emb, labels, paths)
    (tmp_path / "shards" / "shards.cleaner.npz").write_bytes(b"not a shard")  # cleaner's own files are skipped
    (tmp_path / "shards" / "notes.txt").write_text("not an npz")
    assert is_sharded(tmp_path / "shards") and not is_sharded(tmp_path / "shards" / "batch_0000.npz")
    assert [Path(p).name for p in list_shards(tmp_path / "shards")] == [f"batch_{s:04d}.npz" for s in range(3)]
    dataset = load_sharded(tmp_path / "shards")
    np.testing.assert_array_equal(dataset.embeddings, emb)
    np.testing.assert_array_equal(dataset.labels, labels)
    np.testing.assert_array_equal(dataset.image_paths, paths)
    assert dataset.class_names == ("class0", "class1", "class2", "class3")
    again = load_sharded(tmp_path / "shards")
    assert (again.digest, again.embedding_digest) == (dataset.digest, dataset.embedding_digest)
    # the digests are the shards' own: a change to one shard changes them
    np.savez_compressed(
        tmp_path / "shards" / "batch_0001.npz",
        embeddings=emb[200:400] + 1,
        labels=labels[200:400],
        image_paths=paths[200:400],
    )
    changed = load_sharded(tmp_path / "shards")
    assert changed.embedding_digest != dataset.embedding_digest and changed.digest != dataset.digest


def test_a_shard_with_other_labels_is_named_in_one_message(tmp_path):
    emb, labels, paths = clustered()
    write_shards(tmp_path / "s", emb, labels, paths)
    renamed = np.where(labels[400:] == "class3", "Class3", labels[400:])
    np.savez_compressed(
        tmp_path / "s" / "batch_0002.npz", embeddings=emb[400:], labels=renamed, image_paths=paths[400:]
    )
    with pytest.raises(DatasetError, match=r"batch_0002\.npz.*disagrees.*'Class3'.*lacks labels.*'class3'"):
        load_sharded(tmp_path / "s")


def test_shards_must_agree_on_width_and_kind_of_label(tmp_path):
    emb, labels, paths = clustered()
    write_shards(tmp_path / "w", emb, labels, paths, shards=2)
    np.savez_compressed(
        tmp_path / "w" / "batch_0001.npz", embeddings=emb[300:, :8], labels=labels[300:], image_paths=paths[300:]
    )
    with pytest.raises(DatasetError, match=r"batch_0001\.npz.*8 dimensions, not 16"):
        load_sharded(tmp_path / "w")
    write_shards(tmp_path / "k", emb, labels, paths, shards=2)
    np.savez_compressed(
        tmp_path / "k" / "batch_0001.npz", embeddings=emb[300:], labels=np.arange(300) % 4, image_paths=paths[300:]
    )
    with pytest.raises(DatasetError, match=r"batch_0001\.npz.*class ids, not class names"):
        load_sharded(tmp_path / "k")


def test_every_shard_is_checked_like_an_npz_and_never_unpickled(tmp_path):
    emb, labels, paths = clustered()
    write_shards(tmp_path / "p", emb, labels, paths, shards=2)
    sneaky = np.empty(300, dtype=object)
    sneaky[:] = [f"/x/{i}" for i in range(300)]
    np.savez(tmp_path / "p" / "batch_0001.npz", embeddings=emb[300:], labels=labels[300:], image_paths=sneaky)
    with pytest.raises(DatasetError, match=r"shard batch_0001\.npz: .*never unpickles"):
        load_sharded(tmp_path / "p")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no .npz shard"):
        load_sharded(tmp_path / "empty")
    write_shards(tmp_path / "big", emb, labels, paths, shards=3)
    with pytest.raises(DatasetError, match="more than 500 rows.*--dask"):
        load_sharded(tmp_path / "big", max_rows=500)


def test_map_sample_keeps_every_flagged_row_and_each_class_share():
    rng = np.random.default_rng(3)
    n = 10_000
    codes = rng.choice(3, size=n, p=[0.6, 0.3, 0.1]).astype(np.int32)
    flagged = rng.random(n) < 0.02
    score = rng.random(n).astype(np.float32)
    rows, n_flagged, how = sample_rows(flagged, score, codes, 1000)
    assert len(rows) == 1000 and np.all(np.diff(rows) > 0)
    assert set(np.flatnonzero(flagged)) <= set(rows.tolist()) and n_flagged == flagged.sum()
    others = rows[~flagged[rows]]
    shares = np.bincount(codes[others], minlength=3) / len(others)
    expected = np.bincount(codes[~flagged], minlength=3) / (~flagged).sum()
    np.testing.assert_allclose(shares, expected, atol=0.005)
    assert "class-stratified" in how
    assert np.array_equal(sample_rows(flagged, score, codes, 1000)[0], rows)  # seeded
    # more flagged rows than the map holds: the most suspect of them
    many = rng.random(n) < 0.5
    rows, n_flagged, how = sample_rows(many, score, codes, 100)
    assert n_flagged == 100 and many[rows].all()
    assert score[rows].min() >= np.sort(score[many])[-100]
    # a dataset within the limit: every row
    assert len(sample_rows(flagged, score, codes, n)[0]) == n


def test_map_sample_file_round_trip_and_refusals(tmp_path):
    n = 500
    rng = np.random.default_rng(0)
    layouts = {d: (LayoutParams(n_components=d), rng.normal(size=(n, d)).astype(np.float32)) for d in (3, 2)}
    rows = np.arange(0, n, 5)
    path = map_sample_path(tmp_path / "data.npz")
    assert path.name == "data.map-sample.cleaner.npz"
    path.write_bytes(map_sample_bytes("abc", n, rows, 7, "every flagged image (7) and ...", layouts))
    sample = read_map_sample(path, "abc", n, 1 << 20)
    np.testing.assert_array_equal(sample.rows, rows)
    assert sample.n_rows == n and sample.n_flagged == 7 and sample.how.startswith("every flagged")
    np.testing.assert_array_equal(sample.layouts[layouts[3][0].key()], layouts[3][1][rows])
    with pytest.raises(MapSampleProblem, match="other embeddings"):
        read_map_sample(path, "other", n, 1 << 20)
    with pytest.raises(MapSampleProblem, match="could not be read"):
        read_map_sample(path, "abc", n, 100)  # over its byte budget
    (tmp_path / "junk.npz").write_bytes(b"PK junk")
    with pytest.raises(MapSampleProblem):
        read_map_sample(tmp_path / "junk.npz", "abc", n, 1 << 20)


def test_scan_of_a_folder_matches_the_scan_of_the_same_rows_in_one_npz(tmp_path):
    emb, labels, paths = clustered(n=400)
    emb[7] = emb[8]  # a duplicate pair
    labels[5] = "class0" if labels[5] != "class0" else "class1"  # a flipped label
    write_shards(tmp_path / "shards", emb, labels, paths, shards=4)
    np.savez_compressed(tmp_path / "one.npz", embeddings=emb, labels=labels, image_paths=paths)
    for source, out in (("shards", "a.csv"), ("one.npz", "b.csv")):
        proc = subprocess.run(
            [sys.executable, "-m", "cleaner", "scan", source, "--out", out, "--no-image-check"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        )
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    assert load_sharded(tmp_path / "shards").embedding_digest != load_npz(tmp_path / "one.npz").embedding_digest
