"""The neighbour graph, the maps and the scores of a dataset, with progress a person can read while they compute."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import streamlit as st

from cleaner.graph.neighbours import GRAPH_K, NeighbourGraph
from cleaner.io.dataset_types import Dataset
from cleaner.io.images import ImageAccess
from cleaner.io.sidecar import Precomputed
from cleaner.issues.image_check import files_fingerprint, unreadable_images
from cleaner.issues.label import rescore_label_issues
from cleaner.issues.suspects import ScanResult
from cleaner.layout.layouts import LayoutParams, LayoutProgress, layout_algorithm
from cleaner.layout.service import LayoutService
from cleaner.server.config import Settings
from cleaner.server.diskcache import write_error
from cleaner.server.jobs import JobStatus
from cleaner.ui import cache
from cleaner.ui.state import DatasetWork, LearnedLabels, is_new_event

GRAPH_WAIT_S = 3.0  # the page waits this long for a graph being found (small data) before showing the preview


@dataclass(frozen=True)
class Maps:
    """The 3D and 2D coordinates shown, and for each a key that changes whenever they change."""

    coords3: np.ndarray
    coords2: np.ndarray
    key3: str  # "pca" while a PCA projection stands in for UMAP, "partial-..." while a landmark map is unfinished
    key2: str
    rows3: np.ndarray | None = None  # the rows coords3 places, sorted (a partial map's landmarks); None: every row

    def view(self, dims: int) -> tuple[np.ndarray, str]:
        """The coordinates shown for a 2D or 3D view, and the key of the layout they come from ("pca": the preview)."""
        return (self.coords2, self.key2) if dims == 2 else (self.coords3, self.key3)

    def drawn_rows(self, dims: int) -> np.ndarray | None:
        """The rows the view draws, sorted (its coordinates are theirs, in this order); None: every row."""
        return None if dims == 2 else self.rows3


def _map_key(params: LayoutParams, algorithm: str) -> str:
    """A map's key names its algorithm too: a precomputed map and one computed here never share a drawn payload."""
    return f"{params.key()}_{algorithm}"


def graph_and_maps(
    dataset: Dataset, params: LayoutParams, cfg: Settings, precomputed: Precomputed | None = None, maps: bool = True
) -> tuple[NeighbourGraph | None, Maps | None]:
    """The neighbour graph and the UMAP maps once ready. Both are found in the background; meanwhile the graph is
    None and a PCA preview stands in for the map. A checked `--precompute` sidecar's are used instead.
    `maps` False (more images than the map draws): the graph only, no map of every row (None)."""
    graphs = cache.graph_service(str(cfg.cache_dir), cfg.cache_max_bytes)
    service = cache.layout_service(str(cfg.cache_dir), cfg.cache_max_bytes)
    params3, params2 = (replace(params, n_components=n) for n in (3, 2))
    key = (dataset.embedding_digest, GRAPH_K, params.metric)
    made_by: dict[int, str] = {}
    if precomputed is not None:
        graphs.adopt(dataset.embedding_digest, GRAPH_K, precomputed.graph)
        made_by = _adopt_maps(dataset, precomputed, service, (params3, params2))
    status = graphs.request(*key, dataset.embeddings)
    if status.state in ("queued", "running") and status.elapsed_s < GRAPH_WAIT_S:
        # Small data is found by now and no preview flashes by; later reruns of a long search do not wait.
        with contextlib.suppress(Exception):  # still running, or failed: the status below says which
            graphs.wait(*key, timeout=GRAPH_WAIT_S - status.elapsed_s)
    graph = graphs.get(*key, dataset.n)
    _say_once_if_the_cache_cannot_be_written()
    if graph is None:
        status = graphs.status(*key)
        if status.state == "failed":
            st.error(
                f"The nearest neighbours could not be found ({status.error}). The map below is the PCA preview; "
                "reload the page in a minute to try again."
            )
        else:
            _wait_for(
                lambda: _ended([graphs.status(*key)]),
                f"the {GRAPH_K} nearest neighbours of {dataset.n:,} samples are found",
                "the scores, the review queue and the UMAP map follow.",
            )
        return None, _preview(dataset) if maps else None
    if not maps:
        return graph, None
    if len(made_by) == 2:  # both maps from the sidecar, under the name of what made them
        m3, m2 = (
            service.get(dataset.embedding_digest, p, dataset.n, made_by[p.n_components]) for p in (params3, params2)
        )
        if m3 is not None and m2 is not None:
            return graph, Maps(m3, m2, _map_key(params3, made_by[3]), _map_key(params2, made_by[2]))
    return graph, _layouts(dataset, graph, service, params3, params2)


def _adopt_maps(
    dataset: Dataset, precomputed: Precomputed, service: LayoutService, params: tuple[LayoutParams, ...]
) -> dict[int, str]:
    """The sidecar's maps served under the name of the algorithm that made it; {dimensions: algorithm} of those."""
    if precomputed.maps_ignored:
        st.info(f"The precomputed maps are not used: {precomputed.maps_ignored}.")
    made_by = {}
    for p in params:
        coords, algorithm = precomputed.layout(p), precomputed.algorithm(p)
        if coords is not None and algorithm:
            service.adopt(dataset.embedding_digest, p, coords, algorithm)
            made_by[p.n_components] = algorithm
    return made_by


def _layouts(
    dataset: Dataset, graph: NeighbourGraph, service: LayoutService, params3: LayoutParams, params2: LayoutParams
) -> Maps:
    """The 3D UMAP map first, not sharing the cores with its 2D version: the 2D one is asked for only once the 3D is
    shown, and the PCA projection stands in for it until then. While a landmark layout runs, its partial map stands in
    for the 3D map as soon as there is one (the landmarks alone, then every image before the refinement)."""
    digest, preview = dataset.embedding_digest, _preview(dataset)
    algorithm = layout_algorithm(dataset.n)
    status3 = service.request(digest, params3, dataset.embeddings, graph)
    coords3 = service.get(digest, params3, dataset.n)
    if coords3 is None:
        if status3.state != "failed":
            service.request_after(digest, params3, params2, dataset.embeddings, graph)
        if status3.state == "failed":
            st.error(f"The UMAP map could not be computed ({status3.error}). Showing the PCA projection instead.")
            return preview
        step = service.progress(digest, params3)
        shown = _partial(preview, step, params3)
        _wait_for_map(service, digest, params3, dataset.n, step if shown is not preview else None)
        return shown
    status2 = service.request(digest, params2, dataset.embeddings, graph)
    coords2 = service.get(digest, params2, dataset.n)
    if coords2 is not None:
        return Maps(coords3, coords2, _map_key(params3, algorithm), _map_key(params2, algorithm))
    if status2.state == "failed":
        st.warning(f"The 2D UMAP map could not be computed ({status2.error}); the 2D view shows the PCA projection.")
    else:
        _wait_for(
            lambda: _ended([service.status(digest, params2, dataset.n)]),
            "the 3D view is the UMAP map; its 2D version is computed",
            "until it is ready, the 2D view shows a PCA projection.",
            preview_3d=False,
        )
    return replace(preview, coords3=coords3, key3=_map_key(params3, algorithm))


def _partial(preview: Maps, step: LayoutProgress | None, params: LayoutParams) -> Maps:
    """The preview with a running layout's partial 3D map in place of its 3D view, once the layout has one."""
    if step is None or step.coords is None:
        return preview
    return replace(preview, coords3=step.coords, rows3=step.rows, key3=f"partial-{step.step}-{params.key()}")


@st.fragment(run_every=2)
def _wait_for_map(
    service: LayoutService, digest: str, params: LayoutParams, n_rows: int, drawn: LayoutProgress | None
) -> None:
    """Under the map while the UMAP map is computed: which step runs and for how long, and whether the map drawn is
    the preview or a partial map. The whole page reruns once the map is done, or when a newer partial map exists."""
    ended, elapsed = _ended([service.status(digest, params, n_rows)])
    step = service.progress(digest, params)
    newer = step is not None and step.coords is not None and (drawn is None or step.step != drawn.step)
    if ended or newer:
        st.rerun()  # the whole page: the new map is drawn, the partial one's view replaced
    doing = f" ({step.text}…)" if step is not None else ""
    if drawn is None:
        st.caption(
            f"Map: a quick PCA preview while the UMAP map of {n_rows:,} samples is computed in the background"
            f"{doing}, {elapsed:.0f} s so far; it replaces the preview when ready. You can select and review images "
            "on the preview meanwhile."
        )
        return
    what = (
        f"only its {len(drawn.rows):,} landmarks are drawn"
        if drawn.rows is not None
        else "every image placed, not yet refined"
    )
    st.caption(
        f"Map: a partial UMAP map ({what}) while the rest is computed in the background{doing}, {elapsed:.0f} s so "
        "far; the full map replaces it when ready. A click, box or lasso on it selects among the images drawn."
    )


def _ended(statuses: list[JobStatus]) -> tuple[bool, float]:
    """(every job done or one failed, the longest any has run so far)."""
    ended = all(s.state == "ready" for s in statuses) or any(s.state == "failed" for s in statuses)
    return ended, max(s.elapsed_s for s in statuses)


def _preview(dataset: Dataset) -> Maps:
    preview = [cache.preview(dataset.embedding_digest, n, dataset.embeddings) for n in (3, 2)]
    return Maps(preview[0], preview[1], "pca", "pca")


def _say_once_if_the_cache_cannot_be_written() -> None:
    error = write_error()
    if error and is_new_event("cache_write_error", "cannot be written"):  # once a session, whatever the cause
        st.warning(
            f"The cache folder cannot be written ({error}): maps and neighbour graphs are kept in memory "
            "only and are computed again after a restart."
        )


@st.fragment(run_every=2)
def _wait_for(progress: Callable[[], tuple[bool, float]], what: str, then: str, preview_3d: bool = True) -> None:
    """Under the map: what is being computed and for how long; the whole page reruns once it has ended."""
    ended, elapsed = progress()
    if ended:
        st.rerun()  # the whole page: the graph brings the scores and the review queue, the layouts the UMAP map
    if preview_3d:
        st.caption(
            f"Map: a quick PCA preview while {what} in the background ({elapsed:.0f} s so far); {then} "
            "You can select and review images on the preview meanwhile."
        )
    else:
        st.caption(f"Map: {what} in the background ({elapsed:.0f} s so far); {then}")


def suspects(
    dataset: Dataset, graph: NeighbourGraph | None, work: DatasetWork, access: ImageAccess, thorough: bool = False
) -> ScanResult | None:
    """All scores from the shared graph (cached per dataset), plus the image check once someone ran it; None while
    the graph is being found."""
    if graph is None:
        return None
    work.use_ranking(thorough)
    if thorough:
        bar = st.empty()

        def progress(done: int, total: int) -> None:
            bar.progress(done / total, text=f"Thorough ranking: linear probe, fold {done} of {total}")

        result = cache.suspects(dataset.digest, graph.k, graph.metric, True, dataset, graph, progress)
        bar.empty()
    else:
        with st.spinner("Scoring every sample for label issues, outliers and near-duplicates…"):
            result = cache.suspects(dataset.digest, graph.k, graph.metric, False, dataset, graph)
    earlier_image_check(work, access)
    if work.unreadable is None or work.unreadable_access != repr(access):
        return result  # not checked, or checked under other folders or path remaps
    return result.with_scores(work.unreadable)


def learn_from_decisions(result: ScanResult, graph: NeighbourGraph, work: DatasetWork) -> ScanResult:
    """The scores after this session's decisions: an excluded image no longer votes, a relabelled one votes with its
    new label, and their neighbours are re-scored (only the rows a changed decision touches are recomputed)."""
    if not len(work.decisions) or work.thorough:
        return result  # the probe's probabilities would need refitting: the thorough ranking stays as computed
    version = work.decisions.version
    learned = work.learned_labels
    # Learned from this scan (another distance or k, or the scan computed again, starts over from the new one).
    same_scan = learned is not None and learned.scan is result.labels
    if not same_scan or learned.version != version:
        codes = work.label_codes()
        changed = np.flatnonzero(codes != work.dataset.label_codes)
        labels = rescore_label_issues(
            graph,
            work.dataset.label_codes,
            len(work.dataset.class_names),
            excluded=work.excluded_rows(),
            relabelled=dict(zip(changed.tolist(), codes[changed].tolist())),
            # From the shared scan's scores on the first decision too: a full pass over every row, in every session
            # that opens the queue, is what ten sessions at once would each pay in time and in memory.
            previous=learned.labels if same_scan else result.labels,
        )
        work.learned_labels = learned = LearnedLabels(version, result.labels, labels)
    return result.with_scores(learned.labels)


def check_images(work: DatasetWork, access: ImageAccess) -> None:
    """Open every image now, and keep the result for every session while the files stay as they are."""
    dataset = work.dataset
    with st.spinner(f"Opening {dataset.n:,} image files…"):
        result = unreadable_images(dataset.image_paths, access)
        fingerprint = files_fingerprint(dataset.image_paths, access)
    cache.image_checks().put((dataset.digest, repr(access)), fingerprint, result)
    work.check_images(result, repr(access))


def earlier_image_check(work: DatasetWork, access: ImageAccess) -> None:
    """Bring back a check any session made of these files, once confirmed (a stat per file) that none changed."""
    key = (work.dataset.digest, repr(access))
    if work.unreadable is not None or key[1] in work.images_confirmed:
        return
    found = cache.image_checks().get(key)
    work.images_confirmed.add(key[1])  # confirm once per session and access, not on every rerun
    if found is not None and found[0] == files_fingerprint(work.dataset.image_paths, access):
        work.check_images(found[1], key[1])
