"""Decisions reach training: the exclusion list, the labels to fix, the cleaned NPZ, and resuming them all."""

import datetime as dt

import numpy as np
import pytest

from cleaner.decisions.records import (
    Decision,
    Decisions,
    cleaned_npz,
    exclusion_file_name,
    label_codes_after,
    parse_decisions,
    relabel_file_name,
    rows_of,
)
from cleaner.io.dataset import dataset_from_arrays, load_npz


def _dataset(labels):
    n = len(labels)
    emb = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
    paths = np.array([f"/img/{i}.png" for i in range(n)])
    return dataset_from_arrays(emb, np.asarray(labels), paths, "tiny")


def test_exclusion_text_has_one_line_per_excluded_path_and_round_trips():
    d = Decisions()
    d.put("/data/a.png", Decision("exclude", "blurry"))
    d.put("/data/b.png", Decision("keep"))
    d.put("/data/c.png", Decision("exclude"))
    d.put("/data/a.png", Decision("exclude", "blurry again"))  # a new decision replaces the old one
    assert d.exclusion_text() == "/data/c.png\n/data/a.png\n"
    parsed = parse_decisions(d.exclusion_text().encode())
    assert list(parsed.decisions) == ["/data/c.png", "/data/a.png"]
    assert all(x.kind == "exclude" for x in parsed.decisions.values())


def test_parse_skips_blanks_and_comments_and_rejects_binary():
    parsed = parse_decisions("# made by hand\n\n/x/1.png\r\n/x/2.png\n/x/1.png\n")
    assert list(parsed.decisions) == ["/x/1.png", "/x/2.png"] and parsed.ignored_lines == 2
    with pytest.raises(ValueError):
        parse_decisions(b"\xff\xfe\x00bad")


def test_decisions_csv_round_trip_keeps_every_kind_reason_and_author():
    d = Decisions()
    d.put("/x/1.png", Decision("exclude", "outlier 0.9", old_label="cat", decided_by="a@team.org"))
    d.put("/x/2.png", Decision("relabel", "label issue", old_label="cat", new_label="dog", decided_by="b@team.org"))
    d.put("/x/3.png", Decision("keep", "fine", old_label="dog"))
    parsed = parse_decisions(d.decisions_csv())
    assert parsed.decisions == d.by_path and parsed.ignored_lines == 0


def test_parse_csv_skips_unknown_kinds_and_relabels_without_a_label():
    text = (
        "image_path,decision,reason,old_label,new_label,decided_by\n"
        "/x/1.png,delete,,,,\n/x/2.png,relabel,,cat,,\n,exclude,,,,\n/x/3.png,exclude,,,,\n"
    )
    parsed = parse_decisions(text)
    assert list(parsed.decisions) == ["/x/3.png"] and parsed.ignored_lines == 3


def test_relabel_csv_lists_old_and_new_labels_only_for_relabels():
    d = Decisions()
    d.put("/x/1.png", Decision("relabel", old_label="3", new_label="8"))
    d.put("/x/2.png", Decision("exclude"))
    assert d.relabel_csv() == "image_path,old_label,new_label\n/x/1.png,3,8\n"


def test_cleaned_npz_leaves_out_exclusions_and_carries_new_labels_with_their_type():
    data = _dataset([0, 0, 1, 1, 2, 2, 3, 3, 3, 3, 3])
    d = Decisions()
    d.put("/img/1.png", Decision("exclude"))
    d.put("/img/2.png", Decision("relabel", old_label="1", new_label="2"))
    d.put("/img/4.png", Decision("keep"))
    cleaned = load_npz(cleaned_npz(data, d))
    kept = [0, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert cleaned.image_paths.tolist() == [f"/img/{i}.png" for i in kept]
    assert cleaned.labels.tolist() == [0, 2, 1, 2, 2, 3, 3, 3, 3, 3] and cleaned.labels.dtype.kind == "i"
    np.testing.assert_array_equal(cleaned.embeddings, data.embeddings[kept])


def test_string_labels_relabel_and_codes_after():
    data = _dataset(["cat", "dog", "dog"] + ["owl"] * 7)
    d = Decisions()
    d.put("/img/1.png", Decision("relabel", new_label="cat"))
    assert label_codes_after(data, d).tolist() == [0, 0, 1] + [2] * 7
    assert load_npz(cleaned_npz(data, d)).labels.tolist() == ["cat", "cat", "dog"] + ["owl"] * 7


def test_version_grows_with_every_change():
    d = Decisions()
    d.put("/x", Decision("exclude"))
    d.put("/x", None)
    assert d.version == 2 and len(d) == 0


def test_file_names_have_the_date():
    day = dt.date(2026, 3, 4)
    assert exclusion_file_name(day) == "images_to_exclude_from_training_2026_03_04.txt"
    assert relabel_file_name(day) == "labels_to_fix_2026_03_04.csv"


def test_rows_of_finds_every_row_of_each_path_and_nothing_else():
    """Paths listed twice in the dataset give both rows; unknown, repeated and near-miss paths give nothing extra."""
    rng = np.random.default_rng(3)
    names = [f"/img/{i % 37}.png" if i % 5 else f"/img/dup_{i % 4}.png" for i in range(300)]
    order = rng.permutation(len(names))
    paths = np.array(names)[order]
    data = dataset_from_arrays(
        np.zeros((len(paths), 2), np.float32) + np.arange(len(paths))[:, None],
        np.zeros(len(paths), dtype=np.int64),
        paths,
        "dups",
    )
    for wanted in (
        ["/img/3.png"],
        ["/img/dup_1.png", "/img/dup_1.png", "/img/nope.png", "/img/3.pn"],
        sorted(set(names))[::3],
        [],
        ["/img/dup_0.png", "/img/0.png", "/img/36.png"],
    ):
        expected = [row for row, path in enumerate(data.image_paths.tolist()) if path in set(wanted)]
        assert rows_of(data, wanted).tolist() == expected, wanted
        assert rows_of(data, iter(wanted)).tolist() == expected  # any iterable, as the decisions' dict keys
