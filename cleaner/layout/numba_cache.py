"""Keep umap-learn's compiled layout kernels on disk, so a restarted server loads them instead of compiling.

umap-learn decides `cache=` for its own numba functions and compiles the four a layout runs without numba's
disk cache; numba has no supported switch to cache another library's functions (NUMBA_CACHE_DIR only moves
the caches of functions compiled with cache=True). So this module, and only this one, compiles those four
again with `numba.jit(cache=True)` and the options umap-learn gave them, and puts them in umap's modules in
place of its own. What that relies on beyond documented APIs: the kernels' names in umap's modules (two are
private), a dispatcher's `targetoptions` and `locals`, and numba reading `numba.config.CACHE_DIR` (the
NUMBA_CACHE_DIR setting) when a cached function is created. Should any of it change, it logs what failed
and umap-learn compiles as it always does.

numba's cache files are pickles: the folder must be the server's own, which is checked before use.
"""

from __future__ import annotations

import importlib
import logging
import os
import stat
import threading
import types
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# (module, attribute, tag): the tag names each kernel's own cache files. The serial and the parallel epoch
# kernels are one Python function compiled twice, so without it they would share (and overwrite) one index.
KERNELS = (
    ("umap.umap_", "smooth_knn_dist", "smooth_knn_dist"),
    ("umap.umap_", "compute_membership_strengths", "membership"),
    ("umap.layouts", "_nb_optimize_layout_euclidean_single_epoch", "epoch_serial"),
    ("umap.layouts", "_nb_optimize_layout_euclidean_single_epoch_parallel", "epoch_parallel"),
)

_lock = threading.Lock()
_folder: Path | None = None
_installed: dict[str, Any] = {}  # tag -> the cached dispatcher now in umap's module
_done = False


def use_numba_cache(folder: Path) -> None:
    """Keep the compiled UMAP kernels in folder. Takes effect if called before the first layout of the process.

    Only umap-learn's kernels move there. pynndescent (imported by umap) compiles dozens of functions at import
    and caches them next to its own code; pointing NUMBA_CACHE_DIR at an empty folder would make every cold
    cache folder pay for compiling those again. A NUMBA_CACHE_DIR set by the administrator is honoured for all.
    """
    global _folder
    with _lock:
        if _folder is None and not _done:
            _folder = Path(folder)


def kernel_cache_dir() -> Path | None:
    """Where this process keeps compiled UMAP kernels on disk, if anywhere."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    return _folder


def cache_umap_kernels() -> None:
    """Once per process, before the first layout: swap umap-learn's layout kernels for disk-cached copies."""
    global _done
    with _lock:
        if _done:
            return
        _done = True
        if os.environ.get("NUMBA_CACHE_DIR"):
            folder = None  # the administrator's setting decides, for these kernels as for all others
        elif _folder is None:
            return  # no folder given: cleaner writes nowhere else, so umap-learn compiles as it always does
        elif _own_private_folder(_folder):
            folder = _folder
        else:
            return
        for module, name, tag in KERNELS:
            _cache_kernel(module, name, tag, folder)


def kernel_stats() -> dict[str, tuple[int, int]]:
    """For each cached kernel: (signatures loaded from disk, signatures compiled) in this process."""
    out = {}
    for tag, dispatcher in _installed.items():
        stats = dispatcher.stats
        out[tag] = (sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
    return out


def _own_private_folder(folder: Path) -> bool:
    """Create folder for this user only; refuse one that others may write, since numba unpickles what is there."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.stat(folder)
    except OSError as exc:
        log.warning("UMAP kernels will compile on every restart: cannot use %s (%s).", folder, exc.strerror or exc)
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_mode & 0o022 or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
        log.warning(
            "UMAP kernels will compile on every restart: %s is not a folder that only this server's user "
            "can write (numba's cache files are pickles). Give it mode 700.",
            folder,
        )
        return False
    return True


def _cache_kernel(module_name: str, name: str, tag: str, folder: Path | None) -> bool:
    """Put a disk-cached copy of one umap kernel in its module; log and keep umap's own if that fails."""
    try:
        import numba

        module = importlib.import_module(module_name)
        original = getattr(module, name)
        py_func = original.py_func
        copy = types.FunctionType(
            py_func.__code__, py_func.__globals__, py_func.__name__, py_func.__defaults__, py_func.__closure__
        )
        copy.__kwdefaults__ = py_func.__kwdefaults__
        copy.__qualname__ = f"{py_func.__qualname__}__{tag}"  # its own index file: see KERNELS
        previous = numba.config.CACHE_DIR
        # numba picks the cache folder when the function is created: only these kernels go to ours.
        numba.config.CACHE_DIR = str(folder) if folder is not None else previous
        try:
            cached = numba.jit(copy, cache=True, locals=dict(original.locals), **original.targetoptions)
        finally:
            numba.config.CACHE_DIR = previous
        setattr(module, name, cached)
        _installed[tag] = cached
        return True
    except Exception as exc:  # noqa: BLE001 - a cache only saves time; say what failed and compile as before
        log.warning(
            "UMAP kernel %s.%s will compile on every restart: %s: %s", module_name, name, type(exc).__name__, exc
        )
        return False
