"""The Streamlit pieces of the page: the only module of cleaner that imports streamlit."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import streamlit as st
from streamlit_plotly_events import plotly_events

from .. import figures
from ..config import Settings, load_settings
from ..dataset import Dataset, DatasetError, cleaned_npz_bytes, load_npz
from ..demo import load_demo
from ..exclusions import ExclusionList, exclusion_file_name, parse_exclusion_text
from ..images import ImageAccess, PathRemap, load_thumbnail
from ..layout import LayoutParams, LayoutStore, pca_projection
from ..layout_service import LayoutService
from ..neighbours import METRICS, GraphStore, NeighbourGraph, neighbour_graph
from ..review import ORDERS, pending_rows, reasons
from ..scan import ScanResult, report_csv, scores_from_graph
from ..scores import class_confusion, plural, unreadable_images, worst

GRAPH_K = 20
PAGE_SIZE = 24
GALLERY_COLUMNS = 6
MAX_LISTED_NPZ = 500
SMALL_DATA_ROWS = 20_000  # below this a tick also redraws the map right away
MAP_VIEWS = ("3D map: click a point", "2D map: box or lasso select")


# ---------------------------------------------------------------- session state (one owner per piece)

@dataclass(frozen=True)
class Selection:
    """The rows shown in the gallery and how they were chosen."""

    rows: tuple[int, ...] = ()
    description: str = ""
    anchor: int | None = None  # the single point a neighbour search starts from


def _session(dataset_digest: str) -> dict:
    """This browser session's state for one dataset; switching datasets keeps each one's work."""
    per_dataset = st.session_state.setdefault("cleaner_per_dataset", {})
    return per_dataset.setdefault(dataset_digest, {
        "exclusions": ExclusionList(), "selection": Selection(), "page": 0,
        "reviewed": {},  # row -> "excluded" | "kept" | "relabelled": leaves the review queue
        "unreadable": None,  # UnreadableImages once the user has checked the image files
        "map_marks": frozenset(),  # the excluded paths the map was last drawn with
    })


def exclusions_for(dataset: Dataset) -> ExclusionList:
    return _session(dataset.digest)["exclusions"]


def selection_for(dataset: Dataset) -> Selection:
    return _session(dataset.digest)["selection"]


def set_selection(dataset: Dataset, selection: Selection) -> None:
    state = _session(dataset.digest)
    state["selection"] = selection
    state["page"] = 0


_MARKDOWN_SPECIALS = set("\\`*_{}[]<>()#+-.!|~$:")


def literal(text: object) -> str:
    """Text for a widget label (which Streamlit renders as Markdown), escaped so it shows exactly as written."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIALS else ch for ch in str(text))


def _handled_once(key: str, event: object) -> bool:
    """True the first time an event value is seen; components repeat their last value on every rerun."""
    marker = repr(event)
    if st.session_state.get(key) == marker:
        return False
    st.session_state[key] = marker
    return True


# ---------------------------------------------------------------- cached computations (shared, keyed on digests)

@st.cache_resource(show_spinner=False)
def settings() -> Settings:
    return load_settings()


@st.cache_resource(show_spinner=False)
def _demo(demo_dir: str) -> Dataset:
    return load_demo(Path(demo_dir))


@st.cache_resource(max_entries=8, show_spinner=False)
def _server_npz(path: str, mtime_ns: int, size: int, max_bytes: int, max_rows: int, max_dims: int) -> Dataset:
    return load_npz(path, max_bytes=max_bytes, max_rows=max_rows, max_dims=max_dims)


@st.cache_resource(max_entries=8, show_spinner=False)
def cached_graph(embedding_digest: str, k: int, metric: str, cache_dir: str, cache_max_bytes: int,
                 _embeddings: np.ndarray) -> NeighbourGraph:
    """The graph from this process's memory, else from the disk store (any process computed it), else searched."""
    store = GraphStore(Path(cache_dir) / "graphs", max_bytes=cache_max_bytes)
    return neighbour_graph(_embeddings, k=k, metric=metric, store=store, embedding_digest=embedding_digest)


@st.cache_resource(show_spinner=False)
def layout_service(cache_dir: str, cache_max_bytes: int) -> LayoutService:
    """One per server: every session shares the layouts and the worker threads."""
    service = LayoutService(LayoutStore(Path(cache_dir) / "layouts", max_bytes=cache_max_bytes))
    service.warm_up()
    return service


@st.cache_resource(max_entries=16, show_spinner=False)
def cached_preview(embedding_digest: str, n_components: int, _embeddings: np.ndarray) -> np.ndarray:
    return pca_projection(_embeddings, n_components)


@st.cache_resource(max_entries=8, show_spinner=False)
def cached_suspects(digest: str, k: int, metric: str, _dataset: Dataset, _graph: NeighbourGraph) -> ScanResult:
    return scores_from_graph(_dataset, _graph)


@st.cache_resource(max_entries=32, show_spinner=False)
def _map_3d(digest: str, layout_key: str, excluded_key: tuple[int, ...], color_key: str,
            _dataset: Dataset, _coords: np.ndarray, _scores: np.ndarray | None):
    return figures.map_3d(_dataset, _coords, np.asarray(excluded_key, dtype=np.int64), scores=_scores)


@st.cache_resource(max_entries=32, show_spinner=False)
def _map_2d(digest: str, layout_key: str, excluded_key: tuple[int, ...], color_key: str,
            _dataset: Dataset, _coords: np.ndarray, _scores: np.ndarray | None):
    return figures.map_2d(_dataset, _coords, np.asarray(excluded_key, dtype=np.int64), scores=_scores)


# ---------------------------------------------------------------- sidebar: data

def _allowed_npz_files(cfg: Settings) -> list[Path]:
    found: list[Path] = []
    for root in cfg.allowed_roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.endswith(".npz"):
                    real = Path(os.path.realpath(Path(dirpath) / name))
                    if any(real.is_relative_to(r) for r in cfg.allowed_roots):
                        found.append(real)
                if len(found) >= MAX_LISTED_NPZ:
                    return found
    return found


def choose_dataset(cfg: Settings) -> Dataset | None:
    """Sidebar: demo, upload, or a file from the server's allowed folders. Errors are shown, never raised."""
    sources = ["Demo (digits)", "Upload an NPZ", "Server folder"]
    source = st.sidebar.radio("Data", sources, key="data_source")
    if source == sources[0]:
        with st.spinner("Preparing the demo dataset (first start only)…"):
            return _demo(str(cfg.demo_dir))
    if source == sources[1]:
        upload = st.sidebar.file_uploader(
            "NPZ with embeddings, labels, image_paths", type=["npz"], key="npz_upload",
            max_upload_size=max(1, cfg.max_npz_bytes // (1024 * 1024)),
        )
        if upload is None:
            st.info(
                "Upload an `.npz` made with `np.savez_compressed(path, embeddings=[N, D] floats, "
                "labels=[N], image_paths=[N] absolute paths)`."
            )
            return None
        cache = st.session_state.setdefault("cleaner_uploads", {})
        if upload.file_id not in cache:
            try:
                with st.spinner(f"Reading {upload.name}…"):
                    cache.clear()  # one upload at a time per session keeps memory bounded
                    cache[upload.file_id] = load_npz(
                        upload, name=upload.name, max_bytes=cfg.max_npz_bytes,
                        max_rows=cfg.max_rows, max_dims=cfg.max_dims,
                    )
            except DatasetError as exc:
                cache[upload.file_id] = exc
        result = cache[upload.file_id]
        if isinstance(result, DatasetError):
            st.error(literal(f"Could not load {upload.name}: {result}"))
            return None
        return result
    files = _allowed_npz_files(cfg)
    if not files:
        st.info(
            "No NPZ files in the server's allowed folders. The server administrator sets them with "
            "the CLEANER_ALLOWED_ROOTS environment variable."
        )
        return None
    choice = st.sidebar.selectbox("NPZ on the server", [str(f) for f in files], key="server_npz")
    path = Path(choice)
    try:
        stat = path.stat()
        with st.spinner(f"Reading {path.name}…"):
            return _server_npz(
                str(path), stat.st_mtime_ns, stat.st_size, cfg.max_npz_bytes, cfg.max_rows, cfg.max_dims
            )
    except (DatasetError, OSError) as exc:
        st.error(literal(f"Could not load {path.name}: {exc}"))
        return None


def map_settings(dataset: Dataset) -> LayoutParams:
    with st.sidebar.expander("Map settings"):
        metric = st.selectbox("Distance", METRICS, key="metric", help="Cosine suits most neural-network embeddings.")
        n_neighbors = st.slider("UMAP neighbours", 5, GRAPH_K, 15, key="n_neighbors")
        min_dist = st.select_slider("UMAP min distance", [0.0, 0.05, 0.1, 0.25, 0.5], 0.1, key="min_dist")
    return LayoutParams(n_components=3, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric)


def image_access(cfg: Settings) -> ImageAccess:
    with st.sidebar.expander("Image location"):
        st.caption("If the NPZ was made on another machine, map its path prefix to where the images are here.")
        old = st.text_input("Path prefix in the NPZ", key="remap_old")
        new = st.text_input("Replace with", key="remap_new")
    remaps = (PathRemap(old, new),) if old else ()
    return ImageAccess(allowed_roots=cfg.readable_roots, remaps=remaps)


# ---------------------------------------------------------------- compute with progress

@dataclass(frozen=True)
class Maps:
    coords3: np.ndarray
    coords2: np.ndarray
    key: str  # changes whenever the coordinates change
    final: bool  # False while a PCA preview stands in for UMAP


def graph_and_maps(dataset: Dataset, params: LayoutParams, cfg: Settings) -> tuple[NeighbourGraph, Maps]:
    """The neighbour graph, and the UMAP maps if ready; else a PCA preview while UMAP runs in the background."""
    with st.spinner(f"Finding the {GRAPH_K} nearest neighbours of {dataset.n:,} samples…"):
        graph = cached_graph(dataset.embedding_digest, GRAPH_K, params.metric, str(cfg.cache_dir),
                             cfg.cache_max_bytes, dataset.embeddings)
    service = layout_service(str(cfg.cache_dir), cfg.cache_max_bytes)
    all_params = [replace(params, n_components=n) for n in (3, 2)]
    statuses = [service.request(dataset.embedding_digest, p, dataset.embeddings, graph) for p in all_params]
    coords = [service.get(dataset.embedding_digest, p, dataset.n) for p in all_params]
    if all(c is not None for c in coords):
        return graph, Maps(coords[0], coords[1], params.key(), final=True)
    failed = [s for s in statuses if s.state == "failed"]
    if failed:
        st.error(f"The UMAP map could not be computed ({failed[0].error}). Showing the PCA projection instead.")
    else:
        _wait_for_maps(service, dataset.embedding_digest, all_params, dataset.n)
    preview = [cached_preview(dataset.embedding_digest, n, dataset.embeddings) for n in (3, 2)]
    return graph, Maps(preview[0], preview[1], "pca", final=False)


@st.fragment(run_every=2)
def _wait_for_maps(service: LayoutService, digest: str, all_params: list[LayoutParams], n_rows: int) -> None:
    statuses = [service.status(digest, p, n_rows) for p in all_params]
    if all(s.state == "ready" for s in statuses):
        st.rerun()  # the whole page, to swap the preview for the UMAP map
    elapsed = max(s.elapsed_s for s in statuses)
    st.info(
        f"Showing a quick PCA preview. The UMAP map of {n_rows:,} samples is being computed in the background "
        f"({elapsed:.0f} s so far; the first map on a fresh server also compiles UMAP) and replaces it when ready. "
        "You can already select and review images."
    )


# ---------------------------------------------------------------- main area

def dataset_summary(dataset: Dataset) -> None:
    excluded = len(exclusions_for(dataset))
    cols = st.columns(4)
    cols[0].metric("Images", f"{dataset.n:,}")
    cols[1].metric("Embedding size", f"{dataset.dims:,}")
    cols[2].metric("Classes", f"{len(dataset.class_names):,}")
    cols[3].metric("Excluded", f"{excluded:,}")
    st.text(f"Dataset: {dataset.name}")  # plain text: an uploaded file's name is user input


def _excluded_rows(dataset: Dataset) -> tuple[int, ...]:
    excl = exclusions_for(dataset)
    if not len(excl):
        return ()
    mask = np.isin(dataset.image_paths, np.asarray(excl.paths(), dtype=str))
    return tuple(int(r) for r in np.flatnonzero(mask))


def _scores_for_color(result: ScanResult, color_by: str) -> np.ndarray | None:
    if color_by == "class":
        return None
    if color_by == "worst":
        return worst(*result.all()).score
    return next(s.score for s in result.all() if s.name == color_by)


def map_panel(dataset: Dataset, maps: Maps, result: ScanResult) -> None:
    """3D map (click a point) and 2D map (box/lasso); a new selection replaces the current one."""
    excluded = _excluded_rows(dataset)
    _session(dataset.digest)["map_marks"] = frozenset(exclusions_for(dataset).paths())  # what the map shows as ×
    coords3, coords2, layout_key = maps.coords3, maps.coords2, maps.key
    color_names = {"class": "Class", **{k: v for k, v in ORDERS.items() if k != "unreadable"}}
    if result.unreadable is not None:
        color_names["unreadable"] = ORDERS["unreadable"]
    color_by = st.selectbox("Color the map by", list(color_names), format_func=color_names.get, key="color_by")
    scores = _scores_for_color(result, color_by)
    # One map at a time: the 3D click component left mounted in a hidden st.tabs tab redraws itself in a loop.
    view = st.radio("Map", MAP_VIEWS, horizontal=True, key="map_view", label_visibility="collapsed")
    if view == MAP_VIEWS[0]:
        fig3 = _map_3d(dataset.digest, layout_key, excluded, color_by, dataset, coords3, scores)
        clicked = plotly_events(fig3, click_event=True, override_height=600, key=f"map3d_{dataset.digest[:12]}")
        if clicked and _handled_once("cleaner_last_click", (dataset.digest, clicked)):
            event = clicked[0]
            row = fig3.rows_for(int(event.get("curveNumber", -1)), int(event.get("pointNumber", -1)))
            if row is not None:
                set_selection(dataset, Selection((row,), f"clicked point #{row}", anchor=row))
    else:
        fig2 = _map_2d(dataset.digest, layout_key, excluded, color_by, dataset, coords2, scores)
        state = st.plotly_chart(
            fig2, on_select="rerun", selection_mode=("box", "lasso"), key=f"map2d_{dataset.digest[:12]}",
            config={"displaylogo": False},
        )
        points = (state or {}).get("selection", {}).get("points", []) if state else []
        rows = tuple(dict.fromkeys(int(p["customdata"]) for p in points if "customdata" in p))
        if rows and _handled_once("cleaner_last_lasso", (dataset.digest, rows)):
            set_selection(dataset, Selection(rows, f"{plural(len(rows), 'point')} selected in the 2D map",
                                             anchor=rows[0] if len(rows) == 1 else None))


def selection_tools(dataset: Dataset, graph: NeighbourGraph) -> None:
    sel = selection_for(dataset)
    cols = st.columns([2, 1.3, 2.2, 1.6, 0.9], vertical_alignment="bottom")
    klass = cols[0].selectbox("Class", dataset.class_names, key="select_class")
    if cols[1].button("Select class", key="btn_class", use_container_width=True):
        code = dataset.class_names.index(klass)
        rows = tuple(int(r) for r in np.flatnonzero(dataset.label_codes == code))
        set_selection(dataset, Selection(rows, f"class {klass!r} ({plural(len(rows), 'image')})"))
    k = cols[2].slider("Nearest neighbours of the clicked point", 1, graph.k, min(10, graph.k), key="knn_k")
    anchor = sel.anchor
    if cols[3].button("Select neighbours", key="btn_knn", disabled=anchor is None, use_container_width=True,
                      help="Click a point in the 3D map first" if anchor is None else None):
        rows = (anchor,) + tuple(int(r) for r in graph.indices[anchor, :k])
        set_selection(dataset, Selection(rows, f"point #{anchor} and its {k} nearest neighbours", anchor=anchor))
    if cols[4].button("Clear", key="btn_clear", use_container_width=True):
        set_selection(dataset, Selection())


def _tick_callback(dataset_digest: str, path: str, key: str) -> None:
    st.session_state["cleaner_per_dataset"][dataset_digest]["exclusions"].set(
        path, bool(st.session_state[key]), reason="reviewed in gallery")
    st.session_state["cleaner_map_stale"] = True


def _page_callback(dataset_digest: str, paths: list[str], excluded: bool) -> None:
    excl = st.session_state["cleaner_per_dataset"][dataset_digest]["exclusions"]
    for path in paths:
        excl.set(path, excluded, reason="reviewed in gallery")
    st.session_state["cleaner_map_stale"] = True


@st.fragment
def gallery(dataset: Dataset, access: ImageAccess) -> None:
    """The selected images with an Exclude checkbox each; a tick reruns only this fragment."""
    if st.session_state.pop("cleaner_map_stale", False) and dataset.n <= SMALL_DATA_ROWS:
        st.rerun()  # small data: redraw the map marks right away; large data keeps the tick cheap
    state = _session(dataset.digest)
    sel: Selection = state["selection"]
    excl: ExclusionList = state["exclusions"]
    if not sel.rows:
        st.info("Click a point in the 3D map, lasso points in the 2D map, or select a class to review images here.")
        return
    n_pages = (len(sel.rows) + PAGE_SIZE - 1) // PAGE_SIZE
    top = st.columns([4, 2, 2, 2])
    top[0].markdown(f"**Selected: {plural(len(sel.rows), 'image')}**")
    top[0].text(sel.description)
    if dataset.n > SMALL_DATA_ROWS and frozenset(excl.paths()) != state["map_marks"]:
        # Large data: a tick reruns only this gallery, so the map's × marks and the counts outside it wait until
        # asked for (the downloads are always current).
        top[0].caption(f"{plural(len(excl), 'image')} excluded in all; the map and the other counts show "
                       f"{len(state['map_marks']):,}.")
        if top[0].button("Show my exclusions on the map", key="btn_map_marks",
                         help=f"Redraws the map of {dataset.n:,} points (about a second)"):
            st.rerun()
    page = int(top[1].number_input(f"Page (of {n_pages})", 1, n_pages, min(state["page"] + 1, n_pages),
                                   key=f"page_{dataset.digest[:12]}")) - 1
    state["page"] = page
    rows = sel.rows[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]
    paths = [str(dataset.image_paths[r]) for r in rows]
    top[2].button("Exclude all on this page", key="btn_excl_page", on_click=_page_callback,
                  args=(dataset.digest, paths, True), use_container_width=True)
    top[3].button("Include all on this page", key="btn_incl_page", on_click=_page_callback,
                  args=(dataset.digest, paths, False), use_container_width=True)
    grid = st.columns(GALLERY_COLUMNS)
    for i, (row, path) in enumerate(zip(rows, paths)):
        with grid[i % GALLERY_COLUMNS]:
            thumb = load_thumbnail(path, access)
            st.image(thumb.png, width=150)
            st.text(f"label: {dataset.label_text(row)}\n{dataset.file_name(row)}")  # st.text never renders markup
            if not thumb.ok:
                st.text(f"⚠ {thumb.reason}")
            key = f"excl_{dataset.digest[:12]}_{row}"
            st.session_state[key] = path in excl  # the list is the truth; the widget mirrors it
            st.checkbox("Exclude", key=key, on_change=_tick_callback, args=(dataset.digest, path, key))


def _downloads(dataset: Dataset, excl: ExclusionList, result: ScanResult) -> None:
    """Files are built when clicked, from the live exclusion list: always current, even after fragment-only reruns."""
    side = st.sidebar
    side.download_button("Download exclusion list", data=excl.to_text, file_name=exclusion_file_name(),
                         mime="text/plain", on_click="ignore", key="dl_txt", use_container_width=True)
    side.download_button("Download decisions (CSV)", data=excl.to_csv, file_name="cleaner_decisions.csv",
                         mime="text/csv", on_click="ignore", key="dl_decisions", use_container_width=True,
                         help="Each excluded or relabelled image with the reason")

    def report() -> str:
        return report_csv(dataset, result)

    side.download_button("Download scores report (CSV)", data=report, file_name="cleaner_report.csv",
                         mime="text/csv", on_click="ignore", key="dl_report", use_container_width=True,
                         help="One row per image: label-issue, outlier, duplicate and unreadable scores")

    def cleaned() -> bytes:
        keep = ~np.isin(dataset.image_paths, np.asarray(excl.paths(), dtype=str))
        return cleaned_npz_bytes(dataset, np.flatnonzero(keep))

    side.download_button("Download cleaned NPZ", data=cleaned, file_name=f"cleaned_{Path(dataset.name).stem or 'dataset'}.npz",
                         mime="application/octet-stream", on_click="ignore", key="dl_npz", use_container_width=True,
                         help="The dataset without the excluded images")


def exclusion_sidebar(dataset: Dataset, result: ScanResult) -> None:
    """Resume from an earlier exclusion list, and download the current one."""
    excl = exclusions_for(dataset)
    st.sidebar.subheader("Exclusion list")
    upload = st.sidebar.file_uploader("Resume from a saved list (.txt or .csv)", type=["txt", "csv"],
                                      key="exclusion_upload")
    state = _session(dataset.digest)
    if upload is None:
        state.pop("list_message", None)  # the report belongs to the file shown in the uploader
    elif _handled_once("cleaner_last_list", (dataset.digest, upload.file_id)):
        try:
            parsed = parse_exclusion_text(upload.getvalue())
        except ValueError as exc:
            state["list_message"] = ("error", f"Could not read {upload.name}: {exc}")
        else:
            known = set(dataset.image_paths.tolist())
            matched = [p for p in parsed.paths if p in known]
            excl.add_many(matched, reason=f"from {upload.name}")
            unknown = len(parsed.paths) - len(matched)
            text = f"Restored {plural(len(matched), 'exclusion')} from {upload.name}."
            if unknown:
                one = unknown == 1
                text += (f" {plural(unknown, 'path')} {'is' if one else 'are'} not in this dataset and "
                         f"{'was' if one else 'were'} skipped.")
            state["list_message"] = ("warning" if unknown else "success", text)
    message = state.get("list_message")
    if message:
        getattr(st.sidebar, message[0])(literal(message[1]))  # holds the uploaded file's name
    st.sidebar.text(f"{plural(len(excl), 'image')} excluded")
    _downloads(dataset, excl, result)


# ---------------------------------------------------------------- suspects: summary, review queue, class confusion

def suspects(dataset: Dataset, graph: NeighbourGraph) -> ScanResult:
    """All scores from the shared graph (cached per dataset), plus the image check once the user ran it."""
    with st.spinner("Scoring every sample for label issues, outliers and near-duplicates…"):
        result = cached_suspects(dataset.digest, graph.k, graph.metric, dataset, graph)
    unreadable = _session(dataset.digest)["unreadable"]
    return replace(result, unreadable=unreadable) if unreadable is not None else result


def suspects_summary(result: ScanResult) -> None:
    lines = [s.summary for s in result.all()]
    if result.unreadable is None:
        lines.append("image files not checked yet (use “Check image files” in the review queue)")
    st.text("Suspects: " + " · ".join(lines))  # plain text: summaries may quote labels


REVIEW_VIEWS = ("Selected images", "Review queue", "Class confusion")
QUEUE_SHOWN = 6


def review_area(dataset: Dataset, graph: NeighbourGraph, result: ScanResult, access: ImageAccess) -> None:
    """Below the map: the gallery of the selection, the ranked review queue, or the class-confusion table."""
    view = st.radio("Review", REVIEW_VIEWS, horizontal=True, key="review_view", label_visibility="collapsed")
    if view == "Selected images":
        selection_tools(dataset, graph)
        gallery(dataset, access)
    elif view == "Review queue":
        review_queue_panel(dataset, result, access)
    elif confusion_panel(dataset, result):
        gallery(dataset, access)


def _decide(dataset_digest: str, row: int, path: str, decision: str, reason: str, new_label: str = "") -> None:
    state = st.session_state["cleaner_per_dataset"][dataset_digest]
    excl: ExclusionList = state["exclusions"]
    if decision == "excluded":
        excl.add(path, reason)
    elif decision == "relabelled":
        excl.relabel(path, new_label)
    state["reviewed"][row] = decision
    st.session_state["cleaner_map_stale"] = True


def _undo_last(dataset_digest: str, paths: np.ndarray) -> None:
    state = st.session_state["cleaner_per_dataset"][dataset_digest]
    if state["reviewed"]:
        row, decision = state["reviewed"].popitem()
        path = str(paths[row])
        if decision == "excluded":
            state["exclusions"].remove(path)
        elif decision == "relabelled":
            state["exclusions"].relabels.pop(path, None)
        st.session_state["cleaner_map_stale"] = True


def _check_images(dataset: Dataset, access: ImageAccess) -> None:
    with st.spinner(f"Opening {dataset.n:,} image files…"):
        _session(dataset.digest)["unreadable"] = unreadable_images(dataset.image_paths, access)


@st.fragment
def review_queue_panel(dataset: Dataset, result: ScanResult, access: ImageAccess) -> None:
    """The most suspect samples first; Exclude, Keep or Relabel moves each one out of the queue."""
    if st.session_state.pop("cleaner_map_stale", False) and dataset.n <= SMALL_DATA_ROWS:
        st.rerun()
    state = _session(dataset.digest)
    excl: ExclusionList = state["exclusions"]
    orders = [k for k in ORDERS if k != "unreadable" or result.unreadable is not None]
    top = st.columns([3, 2, 2], vertical_alignment="bottom")
    by = top[0].selectbox("Order by", orders, format_func=ORDERS.get, key="queue_order")
    if result.unreadable is None:
        if top[1].button("Check image files", key="btn_check_images", use_container_width=True,
                         help="Open every image to find missing, empty, truncated or non-image files"):
            _check_images(dataset, access)
            st.rerun()
    top[2].button("Undo last decision", key="btn_undo", on_click=_undo_last, args=(dataset.digest, dataset.image_paths),
                  disabled=not state["reviewed"], use_container_width=True)
    done = set(state["reviewed"]) | set(_excluded_rows(dataset))
    queue = pending_rows(result, by, done)
    st.markdown(f"**{len(queue):,} flagged samples left to review** · {len(state['reviewed']):,} reviewed · "
                f"{len(excl):,} excluded")
    if not len(queue):
        st.success("Nothing flagged is left to review for this order. Pick another order, or explore the map.")
        return
    labels = result.labels
    grid = st.columns(3)
    for i, row in enumerate(int(r) for r in queue[:QUEUE_SHOWN]):
        path = str(dataset.image_paths[row])
        why = reasons(dataset, result, row)
        given = dataset.class_names[int(labels.given_label[row])]
        suggested = dataset.class_names[int(labels.suggested_label[row])]
        with grid[i % 3].container(border=True, key=f"queue_card_{row}"):
            thumb = load_thumbnail(path, access)
            st.image(thumb.png, width=150)
            st.text(f"label: {given}" + (f"   neighbours say: {suggested}" if suggested != given else ""))
            st.text(dataset.file_name(row))
            st.text("\n".join(why) or "no strong signal")
            if not thumb.ok:
                st.text(f"⚠ {thumb.reason}")
            reason = why[0] if why else f"review queue ({ORDERS[by]})"
            b = st.columns(2)
            b[0].button("Exclude", key=f"q_excl_{row}", on_click=_decide, type="primary",
                        args=(dataset.digest, row, path, "excluded", reason), use_container_width=True)
            b[1].button("Keep", key=f"q_keep_{row}", on_click=_decide,
                        args=(dataset.digest, row, path, "kept", ""), use_container_width=True)
            if suggested != given:
                st.button(f"Relabel to {literal(suggested)}", key=f"q_relabel_{row}", on_click=_decide,
                          args=(dataset.digest, row, path, "relabelled", "", suggested), use_container_width=True)


def confusion_panel(dataset: Dataset, result: ScanResult) -> bool:
    """Which labels the neighbours contradict, and with what: pick a row to see those images. True if any."""
    pairs = class_confusion(result.labels)
    if not pairs:
        st.success("No flagged label issues: the neighbours agree with the given labels.")
        return False
    st.caption("Pick a row to see those images below.")
    names = dataset.class_names
    table = {
        "given label": [names[p.given] for p in pairs],
        "neighbours say": [names[p.suggested] for p in pairs],
        "images": [p.count for p in pairs],
    }
    event = st.dataframe(table, on_select="rerun", selection_mode="single-row", hide_index=True,
                         key=f"confusion_{dataset.digest[:12]}", use_container_width=True, height=min(400, 38 + 35 * len(pairs)))
    picked = event.selection.rows if event else []
    if picked and _handled_once("cleaner_last_confusion", (dataset.digest, picked[0])):
        pair = pairs[picked[0]]
        set_selection(dataset, Selection(tuple(int(r) for r in pair.rows),
                                         f"labelled {names[pair.given]!r}, neighbours say {names[pair.suggested]!r} "
                                         f"({plural(pair.count, 'image')})"))
    return True
