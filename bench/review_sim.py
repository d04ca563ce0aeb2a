#!/usr/bin/env python
"""A simulated reviewer works the review queue for 3 minutes, one card at a time and in page mode, on data of our own
with planted errors: true errors fixed per minute and decisions that were wrong, for both modes, in one run.

    python bench/review_sim.py --json OUT.json            # about 2 minutes on 2 busy cores
    python bench/review_sim.py --minutes 3 --seed 0 --scale-rows 100000

The queue is cleaner's own code (`DatasetWork`, `learn_from_decisions`, `pending_rows`, `review_page`), run without
a browser; each step's server time is measured as it runs and added to the reviewer's clock.

The time model (seconds, stated here and in docs/review.md; change them with --time KEY=VALUE):
  card mode:  CARD_LOOK_S to read a card (its image, labels, reason and neighbour strip), CLICK_S to press its key,
              then the measured server time of the decision and the queue's rerun, plus RENDER_CARDS_S for the
              browser to draw six cards;
  page mode:  STRIP_S to read the page's story and evidence strip once, GLANCE_S per card, CLICK_S per card
              toggled to keep, CLICK_S to press A, then the measured server time of the page's batch and the
              rerun, plus RENDER_PAGE_S for the browser to draw the page.
The reviewer judges a card right with probability CARD_ACCURACY after a careful look and GLANCE_ACCURACY at a
glance; a wrong judgement keeps a bad image or applies the proposed action to a good one.

The data: CLASSES classes in pairs of look-alikes, `--rows` images; FLIP_SHARE of the labels flipped (most to the
look-alike class, the rest to any class), OUTLIERS images replaced by junk far from every class, DUPLICATES exact
copies of other images. A true error is fixed by relabelling a flipped image to its true class (or excluding it),
excluding a junk image, or excluding every copy of an image but one.

Also measured (issue 28, item 3): `page_decision_s`, the server time to apply a 48-card page at `--scale-rows` rows
(the batch plus the queue fragment's rerun), beside `card_decision_s` (one card, same steps) and `reference_s`
(sorting 2M float32 with numpy) measured in the same process, so the ratios hold across machines.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cleaner.graph.distance import resolved_metric  # noqa: E402
from cleaner.graph.neighbours import NeighbourGraph, neighbour_graph  # noqa: E402
from cleaner.io.dataset import dataset_from_arrays  # noqa: E402
from cleaner.issues.review import KEPT_REASON, pending_rows, reasons, review_page  # noqa: E402
from cleaner.issues.suspects import scores_from_graph  # noqa: E402
from cleaner.ui.compute import learn_from_decisions  # noqa: E402
from cleaner.ui.state import DatasetWork  # noqa: E402

CLASSES = 20
FLIP_SHARE = 0.03
LOOKALIKE_SHARE = 0.7  # of the flips, to the class's look-alike
OUTLIERS = 20
DUPLICATES = 40
ORDER = "worst"
CARDS_SHOWN = 6


@dataclass
class TimeModel:
    CARD_LOOK_S: float = 2.5
    CLICK_S: float = 0.6
    RENDER_CARDS_S: float = 0.15
    STRIP_S: float = 2.0
    GLANCE_S: float = 0.7
    RENDER_PAGE_S: float = 0.5
    CARD_ACCURACY: float = 0.98
    GLANCE_ACCURACY: float = 0.95


@dataclass
class Truth:
    """What is really wrong with each image."""

    true_code: np.ndarray  # [N] the right class (for a junk image: its given one)
    junk: np.ndarray  # [N] bool: not an image of any class: exclude it
    copy_of: np.ndarray  # [N] the row it copies, -1: not a copy

    def group(self, row: int) -> np.ndarray:
        """The rows that are one image (the row, its original and the original's other copies)."""
        root = self.copy_of[row] if self.copy_of[row] >= 0 else row
        return np.concatenate([[root], np.flatnonzero(self.copy_of == root)])


def planted_dataset(rows: int, dims: int, seed: int):
    """Clusters in pairs of look-alikes; flipped labels, junk images and exact copies planted at random rows."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, size=(CLASSES // 2, dims))
    centres = np.repeat(centres, 2, axis=0) + rng.normal(0, 2.2, size=(CLASSES, dims))  # pairs close together
    true = rng.integers(0, CLASSES, size=rows)
    emb = (centres[true] + rng.normal(0, 1.0, size=(rows, dims))).astype(np.float32)
    given = true.copy()
    flipped = rng.choice(rows, size=int(FLIP_SHARE * rows), replace=False)
    lookalike = rng.random(len(flipped)) < LOOKALIKE_SHARE
    given[flipped[lookalike]] = true[flipped[lookalike]] ^ 1  # its pair: 0<->1, 2<->3, ...
    other = flipped[~lookalike]
    given[other] = (true[other] + rng.integers(1, CLASSES, size=len(other))) % CLASSES
    rest = np.setdiff1d(np.arange(rows), flipped)
    junk = rng.choice(rest, size=OUTLIERS, replace=False)
    emb[junk] = rng.normal(0, 25, size=(OUTLIERS, dims)).astype(np.float32)
    rest = np.setdiff1d(rest, junk)
    picks = rng.choice(rest, size=2 * DUPLICATES, replace=False)
    originals, copies = picks[:DUPLICATES], picks[DUPLICATES:]
    emb[copies] = emb[originals]
    given[copies] = given[originals]
    true[copies] = true[originals]
    copy_of = np.full(rows, -1)
    copy_of[copies] = originals
    is_junk = np.zeros(rows, dtype=bool)
    is_junk[junk] = True
    names = np.array([f"class_{c:02d}" for c in range(CLASSES)])
    paths = np.array([f"/sim/img_{i:06d}.png" for i in range(rows)])
    dataset = dataset_from_arrays(emb, names[given], paths, "review_sim")
    # the dataset's class codes follow the sorted names, which are the class numbers here
    return dataset, Truth(true_code=true, junk=is_junk, copy_of=copy_of)


# ---------------------------------------------------------------- the reviewer


def right_choice(work: DatasetWork, truth: Truth, row: int, suggested: str, excluded: set[int]) -> tuple[str, str]:
    """What a reviewer who sees the truth decides: (kind, new label)."""
    names = work.dataset.class_names
    if truth.junk[row]:
        return "exclude", ""
    group = truth.group(row)
    if len(group) > 1 and any(r != row and r not in excluded for r in group.tolist()):
        return "exclude", ""  # another copy of this image stays
    if work.dataset.label_codes[row] != truth.true_code[row]:
        right = names[int(truth.true_code[row])]
        return ("relabel", right) if suggested == right else ("exclude", "")
    return "keep", ""


def outcome(dataset, truth: Truth, decided: dict[int, tuple[str, str]]) -> dict[str, int]:
    """Errors fixed, bad images left (kept, or relabelled to a wrong class) and good images changed, over the decided
    rows; a group of copies counts as one image that needs all copies but one excluded."""
    names = dataset.class_names
    fixed = bad_left = good_changed = 0
    seen_groups: set[int] = set()
    for row, (kind, new) in decided.items():
        group = truth.group(row)
        if len(group) > 1:
            if int(group[0]) in seen_groups:
                continue
            seen_groups.add(int(group[0]))
            out = [r for r in group.tolist() if decided.get(r, ("", ""))[0] == "exclude"]
            fixed += min(len(out), len(group) - 1)
            good_changed += len(out) == len(group)  # every copy excluded: the image is lost
            if all(r in decided for r in group.tolist()):
                bad_left += max(0, len(group) - 1 - len(out))  # all decided, and more than one copy kept
            continue
        bad = truth.junk[row] or dataset.label_codes[row] != truth.true_code[row]
        if not bad:
            good_changed += kind != "keep"
        elif kind == "exclude" or (kind == "relabel" and new == names[int(truth.true_code[row])]):
            fixed += 1
        else:
            bad_left += 1
    return {"errors_fixed": fixed, "bad_left_or_misfixed": bad_left, "good_changed": good_changed}


@dataclass
class Run:
    mode: str
    clock_s: float = 0.0
    decisions: int = 0
    server_s: list[float] = field(default_factory=list)
    decided: dict[int, tuple[str, str]] = field(default_factory=dict)


def _judge(rng, accuracy: float, right: tuple[str, str], proposed: tuple[str, str]) -> tuple[str, str]:
    """The reviewer's decision: right with probability `accuracy`; else the other of (keep, the proposal)."""
    if rng.random() < accuracy:
        return right
    return ("keep", "") if right != ("keep", "") else proposed


def card_mode(dataset, truth: Truth, result, graph, tm: TimeModel, seconds: float, rng) -> Run:
    """The first card each time (X / K / L on the first card): read it, press its key, wait for the queue."""
    work, run = DatasetWork(dataset), Run("one card at a time")
    names = dataset.class_names
    learned = result
    queue = pending_rows(learned, ORDER, work.decided_rows())
    cards = work.queue_cards(ORDER, queue, CARDS_SHOWN)
    while cards and cards[0] is not None:
        row = cards[0]
        suggested = names[int(learned.labels.suggested_label[row])]
        why = reasons(dataset, learned, row)
        proposed = (
            ("relabel", suggested) if learned.labels.flagged[row] and why[0].startswith("label") else ("exclude", "")
        )
        excluded = {r for r, (k, _) in run.decided.items() if k == "exclude"}
        kind, new = _judge(rng, tm.CARD_ACCURACY, right_choice(work, truth, row, suggested, excluded), proposed)
        think = tm.CARD_LOOK_S + tm.CLICK_S
        if run.clock_s + think > seconds:
            break
        start = time.perf_counter()
        work.decide(row, kind, KEPT_REASON if kind == "keep" else why[0], new)  # type: ignore[arg-type]
        work.decision_files()
        learned = learn_from_decisions(result, graph, work)
        queue = pending_rows(learned, ORDER, work.decided_rows())
        cards = work.queue_cards(ORDER, queue, CARDS_SHOWN)
        for r in cards:
            if r is not None:
                reasons(dataset, learned, r)
        server = time.perf_counter() - start
        run.server_s.append(server)
        run.clock_s += think + server + tm.RENDER_CARDS_S
        run.decided[row] = (kind, new)
        run.decisions += 1
    return run


def page_mode(dataset, truth: Truth, result, graph, tm: TimeModel, seconds: float, rng, size: int) -> Run:
    """A page at a time: read the story and its evidence, glance at each card, toggle the ones to keep, press A."""
    work, run = DatasetWork(dataset), Run(f"page mode ({size} cards)")
    learned = result
    queue = pending_rows(learned, ORDER, work.decided_rows())
    page = review_page(dataset, learned, ORDER, queue, size)
    while page is not None:
        shown = work.show_page(ORDER, page)
        excluded = {r for r, (k, _) in run.decided.items() if k == "exclude"}
        chosen = {}
        for card in shown.cards:
            proposed = (card.action, card.new_label)
            suggested = card.new_label or dataset.class_names[int(learned.labels.suggested_label[card.row])]
            as_proposed = proposed if card.ticked else ("keep", "")
            if len(truth.group(card.row)) > 1:
                right = as_proposed  # copies: the page keeps one of those on it, the one to keep
            else:
                right = right_choice(work, truth, card.row, suggested, excluded)
            # what the page can do: its proposal or keep; a right choice it cannot make becomes a keep
            right = right if right in (proposed, ("keep", "")) else ("keep", "")
            chosen[card.row] = _judge(rng, tm.GLANCE_ACCURACY, right, proposed)
            if chosen[card.row] != as_proposed:
                work.toggle_page_card(card.row)
        toggles = len(shown.ticked ^ work.queue_page.ticked)
        think = tm.STRIP_S + tm.GLANCE_S * len(shown.cards) + tm.CLICK_S * (toggles + 1)
        if run.clock_s + think > seconds:
            break
        ticked = work.queue_page.ticked
        start = time.perf_counter()
        work.apply_page(shown.rows)
        work.decision_files()
        learned = learn_from_decisions(result, graph, work)
        queue = pending_rows(learned, ORDER, work.decided_rows())
        page = review_page(dataset, learned, ORDER, queue, size)
        server = time.perf_counter() - start
        run.server_s.append(server)
        run.clock_s += think + server + tm.RENDER_PAGE_S
        for card in shown.cards:
            run.decided[card.row] = (card.action, card.new_label) if card.row in ticked else ("keep", "")
        run.decisions += len(shown.cards)
    return run


def summary(run: Run, dataset, truth: Truth, minutes: float, flagged_bad: int) -> dict:
    got = outcome(dataset, truth, run.decided)
    wrong = got["bad_left_or_misfixed"] + got["good_changed"]
    return {
        "mode": run.mode,
        "decisions": run.decisions,
        "errors_fixed": got["errors_fixed"],
        "errors_fixed_per_minute": round(got["errors_fixed"] / minutes, 1),
        "wrong_decisions": wrong,
        **got,
        "share_of_flagged_errors_fixed": round(got["errors_fixed"] / max(flagged_bad, 1), 3),
        "median_server_s_per_step": round(float(np.median(run.server_s)), 4) if run.server_s else None,
        "simulated_s": round(run.clock_s, 1),
    }


# ---------------------------------------------------------------- page_decision_s at scale


def _scale_graph(rows: int, k: int, codes: np.ndarray, rng) -> NeighbourGraph:
    """A kNN graph of the shape cleaner's has (each row's k neighbours, mostly of its own class, closest first),
    built without a search: the decision path reads the graph, it does not search it."""
    by_class = [np.flatnonzero(codes == c) for c in range(int(codes.max()) + 1)]
    indices = np.empty((rows, k), dtype=np.int32)
    for members in by_class:
        indices[members] = members[rng.integers(0, len(members), size=(len(members), k))]
    noise = rng.random((rows, k)) < 0.05
    indices[noise] = rng.integers(0, rows, size=int(noise.sum()))
    self_hit = indices == np.arange(rows)[:, None]
    indices[self_hit] = (indices[self_hit] + 1) % rows
    distances = np.sort(rng.uniform(0.5, 1.5, size=(rows, k)).astype(np.float32), axis=1)
    return NeighbourGraph(indices, distances, "euclidean", exact=True)


def page_decision_at_scale(rows: int, seed: int, repeats: int = 5) -> dict:
    """Server time to apply a 48-card page at `rows` rows (the batch, the decision files, the queue re-scored and
    the next page composed), a single card's decision through the same steps, and a numpy reference."""
    rng = np.random.default_rng(seed)
    n_classes = 100
    true = rng.integers(0, n_classes, size=rows)
    given = true.copy()
    flips = rng.choice(rows, size=rows // 30, replace=False)
    given[flips] = (true[flips] + 1) % n_classes
    names = np.array([f"c{c:03d}" for c in range(n_classes)])
    emb = rng.normal(size=(rows, 8)).astype(np.float32)
    dataset = dataset_from_arrays(emb, names[given], np.array([f"/s/{i:07d}.png" for i in range(rows)]), "scale")
    graph = _scale_graph(rows, 20, true, rng)  # neighbours of its true class: the flips are suspects
    result = scores_from_graph(dataset, graph)
    page_s, card_s = [], []
    work = DatasetWork(dataset)
    learned = learn_from_decisions(result, graph, work)
    for _ in range(repeats):
        queue = pending_rows(learned, ORDER, work.decided_rows())
        page = review_page(dataset, learned, ORDER, queue, 48)
        work.show_page(ORDER, page)
        start = time.perf_counter()
        work.apply_page(page.rows)
        work.decision_files()
        learned = learn_from_decisions(result, graph, work)
        queue = pending_rows(learned, ORDER, work.decided_rows())
        review_page(dataset, learned, ORDER, queue, 48)
        page_s.append(time.perf_counter() - start)
        row = int(queue[0])
        start = time.perf_counter()
        work.decide(row, "exclude", reasons(dataset, learned, row)[0])
        work.decision_files()
        learned = learn_from_decisions(result, graph, work)
        queue = pending_rows(learned, ORDER, work.decided_rows())
        for r in work.queue_cards(ORDER, queue, CARDS_SHOWN):
            if r is not None:
                reasons(dataset, learned, r)
        card_s.append(time.perf_counter() - start)
    data = np.random.default_rng(1).random(2_000_000).astype(np.float32)
    reference = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.sort(data)
        reference.append(time.perf_counter() - start)
    page, card, ref = (float(np.median(x)) for x in (page_s, card_s, reference))
    return {
        "rows": rows,
        "page_cards": 48,
        "page_decision_s": round(page, 4),
        "card_decision_s": round(card, 4),
        "reference_s": round(ref, 4),
        "page_over_card": round(page / card, 2),
        "page_over_reference": round(page / ref, 1),
        "repeats": repeats,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--dims", type=int, default=32)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--page-size", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument("--seeds", type=int, default=3, help="datasets and reviewers simulated; the table is the mean")
    parser.add_argument("--scale-rows", type=int, default=100_000, help="0 skips page_decision_s")
    parser.add_argument(
        "--time",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"change the time model: {', '.join(asdict(TimeModel()))}",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    tm = TimeModel()
    for item in args.time:
        key, value = item.split("=", 1)
        if not hasattr(tm, key):
            parser.error(f"--time {item}: no such key; have {', '.join(asdict(tm))}")
        setattr(tm, key, float(value))
    seconds = args.minutes * 60
    per_seed, data = [], []
    for seed in range(args.seed, args.seed + args.seeds):  # a dataset and a reviewer per seed
        dataset, truth = planted_dataset(args.rows, args.dims, seed)
        graph = neighbour_graph(dataset.embeddings, k=20, metric=resolved_metric("auto", dataset.embeddings))
        result = scores_from_graph(dataset, graph)
        flagged = pending_rows(result, ORDER, [])
        bad = truth.junk | (dataset.label_codes != truth.true_code) | (truth.copy_of >= 0)
        runs = [
            card_mode(dataset, truth, result, graph, tm, seconds, np.random.default_rng(seed)),
            page_mode(dataset, truth, result, graph, tm, seconds, np.random.default_rng(seed), args.page_size),
        ]
        per_seed.append([summary(r, dataset, truth, args.minutes, int(bad[flagged].sum())) for r in runs])
        data.append(
            {
                "seed": seed,
                "planted_errors": int(bad.sum()),
                "flipped_labels": int((dataset.label_codes != truth.true_code).sum()),
                "flagged": int(len(flagged)),
                "planted_errors_flagged": int(bad[flagged].sum()),
            }
        )
    out = {
        "data": {
            "rows": args.rows,
            "dims": args.dims,
            "classes": CLASSES,
            "junk_images": OUTLIERS,
            "duplicate_copies": DUPLICATES,
            "per_seed": data,
        },
        "time_model": asdict(tm),
        "minutes": args.minutes,
        "seeds": args.seeds,
        "modes": [_mean([runs[i] for runs in per_seed]) for i in range(2)],
        "per_seed": per_seed,
    }
    if args.scale_rows:
        out["page_decision"] = page_decision_at_scale(args.scale_rows, args.seed)
    print(table(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return out


def _mean(rows: list[dict]) -> dict:
    """One mode's results over the seeds: each number's mean."""
    out = {"mode": rows[0]["mode"]}
    for key, value in rows[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = round(float(np.mean([r[key] for r in rows])), 3)
    return out


def table(out: dict) -> str:
    lines = [
        f"Mean of {out['seeds']} seeds, {out['minutes']:g} minutes each:",
        "",
        "| mode | decisions | true errors fixed | per minute | wrong decisions (bad kept or misfixed / good "
        "changed) | median server s per step |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in out["modes"]:
        lines.append(
            f"| {m['mode']} | {m['decisions']:.0f} | {m['errors_fixed']:.1f} | "
            f"{m['errors_fixed_per_minute']:.1f} | {m['wrong_decisions']:.1f} "
            f"({m['bad_left_or_misfixed']:.1f} / {m['good_changed']:.1f}) | "
            f"{m['median_server_s_per_step']:.3f} |"
        )
    if "page_decision" in out:
        p = out["page_decision"]
        lines.append(
            f"\npage_decision_s at {p['rows']:,} rows ({p['page_cards']} cards): {p['page_decision_s']} s; "
            f"one card {p['card_decision_s']} s; reference (numpy sort of 2M floats) {p['reference_s']} s; "
            f"page / card {p['page_over_card']}, page / reference {p['page_over_reference']}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
