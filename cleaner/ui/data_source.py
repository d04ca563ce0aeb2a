"""Sidebar: where the data comes from (demo, upload, server folder), the map settings and the image location."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from cleaner.graph.distance import AUTO, COSINE, EUCLIDEAN
from cleaner.graph.neighbours import GRAPH_K
from cleaner.io import server_files
from cleaner.io.dataset import load_npz
from cleaner.io.dataset_types import Dataset, DatasetError
from cleaner.io.images import ImageAccess, PathRemap
from cleaner.io.map_sample import MapSample, map_sample_path
from cleaner.io.shards import list_shards
from cleaner.io.sidecar import Precomputed, sidecar_path
from cleaner.layout.layouts import LayoutParams
from cleaner.server.config import Settings
from cleaner.server.limits import MB
from cleaner.ui import cache
from cleaner.ui.state import remembered, uploaded_dataset, widget_value
from cleaner.ui.text import literal

SOURCES = ("Demo (digits)", "Upload an NPZ", "Server folder")


def allowed_npz_files(cfg: Settings) -> list[Path]:
    """NPZ files (and folders of NPZ shards) the server offers from its allowed folders (see cleaner.io.server_files)."""
    return server_files.allowed_npz_files(tuple(cfg.allowed_roots))


def _option(path: Path) -> str:
    """A folder of shards ends with the path separator in the list, so it reads as the folder it is."""
    return str(path) + os.sep if path.is_dir() else str(path)


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
    names = [_option(f) for f in files]
    path = Path(st.sidebar.selectbox("NPZ on the server", names, **remembered("server_npz", options=names)))
    real = server_files.real_path_inside(path, tuple(cfg.allowed_roots))
    if real is None:  # the listing may be older than a new link
        st.error(literal(f"{path.name} now leads outside the server's allowed folders; it is not opened."))
        return None
    try:
        if real.is_dir():
            with st.spinner(f"Reading the shards in {path.name}…"):
                return cache.server_shards(
                    str(real), _shards_fingerprint(real), cfg.max_npz_bytes, cfg.max_rows, cfg.max_dims
                )
        stat = real.stat()
        with st.spinner(f"Reading {path.name}…"):
            return cache.server_npz(
                str(real), stat.st_mtime_ns, stat.st_size, cfg.max_npz_bytes, cfg.max_rows, cfg.max_dims
            )
    except (DatasetError, OSError) as exc:
        st.error(literal(f"Could not load {path.name}: {exc}"))
        return None


def _shards_fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Every shard's name, modification time and size: the folder is read again when any of them changes."""
    stats = [(p, os.stat(p)) for p in list_shards(folder)]
    return tuple((p, s.st_mtime_ns, s.st_size) for p, s in stats)


def _beside_server_file(cfg: Settings, name_of: Callable[[str], Path]) -> tuple[Path, Path] | None:
    """(as named, real path) of the file `cleaner scan --precompute` writes beside the chosen server file or folder
    (`name_of` names it), when it is there inside the allowed folders; else None."""
    if widget_value("data_source") != SOURCES[2] or not widget_value("server_npz"):
        return None
    path = name_of(widget_value("server_npz"))
    real = server_files.real_path_inside(path, tuple(cfg.allowed_roots))
    if real is None or not real.is_file():
        return None  # none there, or a link leading out of the allowed folders: never opened
    return path, real


def precomputed(dataset: Dataset, cfg: Settings, params: LayoutParams) -> Precomputed | None:
    """The neighbours and maps `cleaner scan --precompute` left next to the server file, once checked; else None."""
    beside = _beside_server_file(cfg, sidecar_path)
    if beside is None:
        return None
    side, real = beside
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


def map_sample(dataset: Dataset, cfg: Settings) -> MapSample | str | None:
    """For a dataset with more images than the map draws: the map sample `cleaner scan --precompute` wrote next to
    the server file or folder, once checked; else why it cannot be used (None: there is none)."""
    beside = _beside_server_file(cfg, map_sample_path)
    if beside is None:
        return None
    stat = beside[1].stat()
    found = cache.map_sample(
        str(beside[1]), stat.st_mtime_ns, stat.st_size, dataset.embedding_digest, dataset.n, cfg.max_npz_bytes
    )
    if isinstance(found, MapSample) and len(found.rows) > cfg.map_limit:
        return (
            f"it holds {len(found.rows):,} images, more than this server's map limit of {cfg.map_limit:,} "
            f"(scan again with --map-limit {cfg.map_limit})"
        )
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
