"""Sidebar: where the data comes from (demo, upload, server folder), the map settings and the image location."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cleaner.graph.distance import AUTO, COSINE, EUCLIDEAN
from cleaner.graph.neighbours import GRAPH_K
from cleaner.io import server_files
from cleaner.io.dataset import load_npz
from cleaner.io.dataset_types import Dataset, DatasetError
from cleaner.io.images import ImageAccess, PathRemap
from cleaner.io.sidecar import Precomputed, sidecar_path
from cleaner.layout.layouts import LayoutParams
from cleaner.server.config import Settings
from cleaner.server.limits import MB
from cleaner.ui import cache
from cleaner.ui.state import remembered, uploaded_dataset, widget_value
from cleaner.ui.text import literal

SOURCES = ("Demo (digits)", "Upload an NPZ", "Server folder")


def allowed_npz_files(cfg: Settings) -> list[Path]:
    """NPZ files the server offers from its allowed folders (see cleaner.io.server_files)."""
    return server_files.allowed_npz_files(tuple(cfg.allowed_roots))


def choose_dataset(cfg: Settings) -> Dataset | None:
    """Sidebar: demo, upload, or a file from the server's allowed folders. Errors are shown, never raised."""
    source = st.sidebar.radio("Data", SOURCES, **remembered("data_source", options=SOURCES))
    if source == SOURCES[0]:
        try:
            with st.spinner("Preparing the demo dataset (first start only)…"):
                return cache.demo_dataset(str(cfg.demo_dir))
        except OSError as exc:  # the demo's images are written into the cache folder once
            st.error(
                literal(
                    f"The demo could not be written to {cfg.demo_dir} ({exc.strerror or exc}). "
                    "Upload an NPZ or pick one from the server folder."
                )
            )
            return None
    if source == SOURCES[1]:
        return _uploaded(cfg)
    return _from_server_folder(cfg)


def _uploaded(cfg: Settings) -> Dataset | None:
    upload = st.sidebar.file_uploader(
        "NPZ with embeddings, labels, image_paths",
        type=["npz"],
        key="npz_upload",
        max_upload_size=max(1, cfg.max_npz_bytes // MB),
    )
    if upload is None:
        st.info(
            "Upload an `.npz` made with `np.savez_compressed(path, embeddings=[N, D] floats, "
            "labels=[N], image_paths=[N] absolute paths)`."
        )
        return None

    def load() -> Dataset | DatasetError:
        try:
            with st.spinner(f"Reading {upload.name}…"):
                return load_npz(
                    upload, name=upload.name, max_bytes=cfg.max_npz_bytes, max_rows=cfg.max_rows, max_dims=cfg.max_dims
                )
        except DatasetError as exc:
            return exc

    result = uploaded_dataset(upload.file_id, load)
    if isinstance(result, DatasetError):
        st.error(literal(f"Could not load {upload.name}: {result}"))
        return None
    return result


def _from_server_folder(cfg: Settings) -> Dataset | None:
    files = allowed_npz_files(cfg)
    if not files:
        st.info(
            "No NPZ files in the server's allowed folders. The server administrator sets them with "
            "the CLEANER_ALLOWED_ROOTS environment variable."
        )
        return None
    names = [str(f) for f in files]
    path = Path(st.sidebar.selectbox("NPZ on the server", names, **remembered("server_npz", options=names)))
    real = server_files.real_path_inside(path, tuple(cfg.allowed_roots))
    if real is None:  # the listing may be older than a new link
        st.error(literal(f"{path.name} now leads outside the server's allowed folders; it is not opened."))
        return None
    try:
        stat = real.stat()
        with st.spinner(f"Reading {path.name}…"):
            return cache.server_npz(
                str(real), stat.st_mtime_ns, stat.st_size, cfg.max_npz_bytes, cfg.max_rows, cfg.max_dims
            )
    except (DatasetError, OSError) as exc:
        st.error(literal(f"Could not load {path.name}: {exc}"))
        return None


def precomputed(dataset: Dataset, cfg: Settings, params: LayoutParams) -> Precomputed | None:
    """The neighbours and maps `cleaner scan --precompute` left next to the server file, once checked; else None."""
    if widget_value("data_source") != SOURCES[2] or not widget_value("server_npz"):
        return None
    side = sidecar_path(widget_value("server_npz"))
    real = server_files.real_path_inside(side, tuple(cfg.allowed_roots))
    if real is None or not real.is_file():
        return None  # none there, or a link leading out of the allowed folders: never opened
    stat = real.stat()
    found = cache.sidecar(
        str(real),
        stat.st_mtime_ns,
        stat.st_size,
        dataset.embedding_digest,
        dataset.n,
        min(GRAPH_K, dataset.n - 1),
        params.metric,
        cfg.max_npz_bytes,
    )
    if isinstance(found, str):
        st.warning(
            literal(
                f"{side.name} next to this file is not used: {found}. The neighbours and the maps are "
                "computed here instead."
            )
        )
        return None
    st.sidebar.caption(literal(f"Neighbours and maps from {side.name} (made by `cleaner scan --precompute`)."))
    return found


RANKINGS = ("Fast: the neighbours' votes", "Thorough: votes and a linear probe")


def ranking_is_thorough() -> bool:
    """The label-issue ranking: the neighbours' votes, or (slower, for weak embeddings) with a linear probe too."""
    choice = st.sidebar.radio(
        "Label-issue ranking",
        RANKINGS,
        **remembered("ranking", options=RANKINGS),
        help="Thorough fits a cross-validated logistic regression on the embeddings: better "
        "where the embedding mixes classes, slower on large data.",
    )
    return choice == RANKINGS[1]


DISTANCES = (AUTO, COSINE, EUCLIDEAN)


def map_settings(dataset: Dataset) -> LayoutParams:
    """The map's settings, with "auto" resolved to the distance that suits this dataset's embeddings."""
    auto = cache.metric_choice(dataset.embedding_digest, dataset.embeddings)
    with st.sidebar.expander("Map settings"):
        chosen = st.selectbox(
            "Distance",
            DISTANCES,
            **remembered("metric", options=DISTANCES),
            format_func=lambda m: f"auto: {auto.metric}" if m == AUTO else m,
            help="The distance the neighbours, the scores and the map are found with. Auto picks "
            "euclidean for non-negative features (ReLU activations, pixels), whose length "
            "carries information, and cosine for signed or normalised embeddings.",
        )
        if chosen == AUTO:
            st.caption(literal(f"Auto chose {auto.metric}: {auto.reason}."))
        n_neighbors = st.slider("UMAP neighbours", 5, GRAPH_K, **remembered("n_neighbors", value=15))
        min_dist = st.select_slider(
            "UMAP min distance", [0.0, 0.05, 0.1, 0.25, 0.5], **remembered("min_dist", value=0.1)
        )
    metric = auto.metric if chosen == AUTO else chosen
    return LayoutParams(n_components=3, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric)


def image_access(cfg: Settings) -> ImageAccess:
    with st.sidebar.expander("Image location"):
        st.caption("If the NPZ was made on another machine, map its path prefix to where the images are here.")
        old = st.text_input("Path prefix in the NPZ", key="remap_old")
        new = st.text_input("Replace with", key="remap_new")
    remaps = (PathRemap(old, new),) if old else ()
    return ImageAccess(allowed_roots=cfg.readable_roots, remaps=remaps)
