"""`cleaner effect`: the figures it prints and writes, checked against values computed here, and its errors."""

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from cleaner.cli.effect import main
from cleaner.decisions.effect import audit_rows
from cleaner.decisions.records import AuditVerdict, Decision, Decisions
from cleaner.io.dataset import load_npz, npz_bytes
from cleaner.issues.ranking import review_queue
from cleaner.issues.suspects import scan

NAMES = np.array(["ant", "bee", "cow", "dog"])
N, AUDITED, FROM_QUEUE = 800, 100, 40


def planted(n: int, seed: int, dims: int = 16):
    """Four Gaussian classes in a row; 15% of labels moved to the next class (the look-alike)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.normal(size=(n, dims))
    x[:, 0] += 3.0 * y
    flip = rng.random(n) < 0.15
    noisy = np.where(flip, np.where(y == 3, 2, y + 1), y)
    return x.astype(np.float32), y, noisy, flip


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """An NPZ with planted flips and a decisions CSV: an oracle audit, then 40 queue cards and one selection."""
    folder = tmp_path_factory.mktemp("effect")
    x, y, noisy, flip = planted(N, seed=0)
    paths = np.array([f"/data/img_{i:04d}.png" for i in range(N)])
    data = folder / "data.npz"
    data.write_bytes(npz_bytes(x, NAMES[noisy], paths))
    d = Decisions()
    audited = audit_rows(N, AUDITED, seed=0)
    for row in audited.tolist():
        if row % 17 == 0:  # an image not worth a label at all
            verdict = AuditVerdict("exclude")
        elif flip[row]:
            verdict = AuditVerdict("relabel", str(NAMES[y[row]]))
        else:
            verdict = AuditVerdict("keep", str(NAMES[y[row]]))
        d.set_audit(str(paths[row]), verdict)
        d.put(
            str(paths[row]),
            Decision(verdict.kind, new_label=verdict.label if verdict.kind == "relabel" else "", source="audit"),
        )
    order = review_queue(*scan(load_npz(data)).all(), by="worst", flagged_only=True)
    for row in order[:FROM_QUEUE].tolist():  # the oracle works the top of the queue
        d.put(
            str(paths[row]),
            Decision("relabel", new_label=str(NAMES[y[row]]), source="queue")
            if flip[row]
            else Decision("keep", source="queue"),
        )
    bad_audited = [r for r in audited.tolist() if flip[r] or r % 17 == 0]
    beyond = [r for r in bad_audited if r not in set(order[:FROM_QUEUE].tolist())]
    d.put(str(paths[beyond[0]]), Decision("exclude", source="selection"))  # a later selection covers one more
    decisions = folder / "decisions.csv"
    decisions.write_text(d.decisions_csv(), encoding="utf-8")
    return dict(
        folder=folder,
        data=data,
        decisions=decisions,
        x=x,
        y=y,
        noisy=noisy,
        flip=flip,
        paths=paths,
        audited=audited,
        order=order,
        bad_audited=bad_audited,
        selected=beyond[0],
        d=d,
    )


def run(case, *extra, json_name="out.json"):
    out = case["folder"] / json_name
    code = main([str(case["data"]), "--decisions", str(case["decisions"]), "--json", str(out), *map(str, extra)])
    return code, (json.loads(out.read_text()) if code == 0 else None)


def probe_accuracy(x_train, y_train, x_eval, y_eval, mean, std) -> float:
    """The probe as the issue asks for it: sklearn's LogisticRegression on standardised embeddings, tol 1e-3, 200
    iterations."""
    scale = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
    model = LogisticRegression(tol=1e-3, max_iter=200).fit(scale(x_train), y_train)
    return float((model.predict(scale(x_eval)) == y_eval).mean())


def test_effect_reports_the_audit_against_a_count_made_here(case, capsys):
    code, out = run(case)
    assert code == 0, capsys.readouterr().err
    bad = case["bad_audited"]
    assert out["n_rows"] == N and out["audited"] == AUDITED and out["trusted_source"] == "audit"
    assert out["audited_bad"] == len(bad)
    assert out["bad_rate"] == pytest.approx(len(bad) / AUDITED)
    top = set(case["order"][:FROM_QUEUE].tolist())
    caught = [r for r in bad if r in top or r == case["selected"]]
    assert any(r in top for r in bad)  # the queue's rule (b) is at work, not only the selection's rule (a)
    assert out["caught"] == len(caught) and out["review_recall"] == pytest.approx(len(caught) / len(bad))
    assert out["bad_left"] == pytest.approx(N * (len(bad) - len(caught)) / AUDITED)
    low, high = out["bad_left_ci"]
    assert low < out["bad_left"] < high
    assert out["bad_rate_ci"][0] < out["bad_rate"] < out["bad_rate_ci"][1]
    assert out["audit_is_seeded_prefix"] is True
    # the queue's 40 cards: every one found a bad image or not, as planted
    assert out["queue_window"] == FROM_QUEUE
    assert out["queue_bad"] == int(case["flip"][case["order"][:FROM_QUEUE]].sum())
    printed = capsys.readouterr().out
    assert f"audit of {AUDITED} random images: about {100 * len(bad) / AUDITED:.1f}% bad" in printed
    assert "probe accuracy on" in printed and "(audit)" in printed and "McNemar p=" in printed


def test_effect_probe_accuracies_match_sklearn_run_here(case):
    _, out = run(case, json_name="probe.json")
    x, y, noisy, audited = case["x"], case["y"], case["noisy"], case["audited"]
    train = np.ones(N, bool)
    train[audited] = False
    trusted = np.array([r for r in audited.tolist() if r % 17 != 0])  # the audit's excluded images have no label
    mean, std = x[train].astype(np.float64).mean(0), np.maximum(x[train].astype(np.float64).std(0), 1e-6)
    before = probe_accuracy(x[train], noisy[train], x[trusted], y[trusted], mean, std)
    # after: the queue's relabels applied, the selection's exclusion left out (the audited rows are held out anyway)
    cleaned = noisy.copy()
    fixed = case["order"][:FROM_QUEUE]
    cleaned[fixed] = y[fixed]
    keep = train.copy()
    keep[case["selected"]] = False
    after = probe_accuracy(x[keep], cleaned[keep], x[trusted], y[trusted], mean, std)
    assert out["trusted_rows"] == trusted.size
    assert out["training_rows_before"] == train.sum() and out["training_rows_after"] == keep.sum()
    assert out["probe_accuracy_before"] == pytest.approx(before, abs=1e-12)
    assert out["probe_accuracy_after"] == pytest.approx(after, abs=1e-12)
    assert out["probe_gain"] == pytest.approx(out["probe_accuracy_after"] - out["probe_accuracy_before"])
    low, high = out["probe_gain_ci"]
    assert low <= out["probe_gain"] <= high
    assert "bootstrap" in out["probe_gain_method"] and "McNemar" in out["probe_test_method"]
    assert 0 <= out["probe_mcnemar_p"] <= 1


def test_effect_on_a_trusted_file(case, capsys):
    x, y, _, _ = planted(300, seed=1)
    val = case["folder"] / "val.npz"
    val.write_bytes(npz_bytes(x, NAMES[y], np.array([f"/val/{i}.png" for i in range(300)])))
    code, out = run(case, "--trusted", val, json_name="trusted.json")
    assert code == 0, capsys.readouterr().err
    assert out["trusted_source"] == "file" and out["trusted_rows"] == 300
    assert out["training_rows_before"] == N  # nothing of the file is in the dataset: every row trains
    assert [c["n"] for c in out["probe_per_class"]] == np.bincount(y).tolist()


def test_effect_refuses_a_trusted_file_of_another_embedding_width(case, capsys):
    val = case["folder"] / "narrow.npz"
    val.write_bytes(npz_bytes(case["x"][:50, :8], NAMES[case["y"][:50]], case["paths"][:50]))
    code, _ = run(case, "--trusted", val, json_name="narrow.json")
    err = capsys.readouterr().err
    assert code == 2 and "8 values per image" in err and "16" in err


def test_effect_refuses_decisions_without_an_audit_or_trusted_file(case, capsys):
    d = Decisions(by_path=dict(case["d"].by_path))  # the same decisions, the audit's verdicts dropped
    path = case["folder"] / "no_audit.csv"
    path.write_text(d.decisions_csv(), encoding="utf-8")
    code = main([str(case["data"]), "--decisions", str(path)])
    assert code == 2 and "audit some images or give --trusted" in capsys.readouterr().err


def test_effect_refuses_decisions_for_another_dataset(case, capsys):
    d = Decisions()
    d.set_audit("/elsewhere/1.png", AuditVerdict("keep", "ant"))
    d.put("/elsewhere/2.png", Decision("exclude", source="queue"))
    path = case["folder"] / "other.csv"
    path.write_text(d.decisions_csv(), encoding="utf-8")
    code = main([str(case["data"]), "--decisions", str(path)])
    assert code == 2 and "this decisions file is for another dataset" in capsys.readouterr().err


def test_effect_refuses_a_missing_decisions_file(case, capsys):
    code = main([str(case["data"]), "--decisions", str(case["folder"] / "missing.csv")])
    assert code == 2 and "missing.csv" in capsys.readouterr().err
