"""The datasets the server may offer from its allowed folders (NPZ files, and folders of NPZ shards), listed without
walking them on every page run."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cleaner.io.shards import looks_like_shards
from cleaner.io.sidecar import SIDECAR_SUFFIX

MAX_LISTED_NPZ = 500
LISTING_MAX_AGE_S = 30.0  # walked again at least this often, whatever the folders' times say


def real_path_inside(path: str | os.PathLike, roots: tuple[Path, ...]) -> Path | None:
    """The path with its symlinks and '..' resolved, if that lies inside one of the (resolved) roots; else None."""
    real = Path(os.path.realpath(path))
    return real if any(real.is_relative_to(r) for r in roots) else None


def allowed_npz_files(roots: tuple[Path, ...]) -> list[Path]:
    """NPZ files under the roots (symlinks resolved and checked), at most MAX_LISTED_NPZ. A folder whose NPZ files
    are numbered alike (`looks_like_shards`: part_0000.npz, part_0001.npz, ...) is listed once, as the folder: one
    dataset in shards.

    The page asks on every run; the folders are walked again when one of them changed (adding, removing or renaming
    an entry changes its folder's modification time), since walking a folder that also holds a hundred thousand
    images would cost every run of every session. LISTING_MAX_AGE_S after the last walk (for file systems whose
    folder times are coarse or not kept) they are walked again on a background thread while the page goes on with
    the listing it has. A walk that met a missing or unreadable folder is not kept.
    """
    with _listing_lock:
        memo = _listings.get(roots)
    if memo is not None and _unchanged(memo.folders):
        if time.monotonic() - memo.walked_at >= LISTING_MAX_AGE_S:
            _refresh_in_background(roots)  # this run, and every other until the walk ends, keeps the last listing
        return list(memo.files)
    with _walk_lock(roots):  # sessions arriving together wait for one walk instead of each walking
        with _listing_lock:
            fresh = _listings.get(roots)
        if fresh is not None and fresh is not memo and _unchanged(fresh.folders):
            return list(fresh.files)
        return list(_walk_and_keep(roots).files)


def _walk_lock(roots: tuple[Path, ...]) -> threading.Lock:
    with _listing_lock:
        return _walk_locks.setdefault(roots, threading.Lock())


def _walk_and_keep(roots: tuple[Path, ...]) -> _Listing:
    try:
        listing = _walk(roots)
        with _listing_lock:
            if listing.complete:
                _listings[roots] = listing
            else:
                _listings.pop(roots, None)
        return listing
    finally:
        with _listing_lock:
            _refreshing.discard(roots)


def _refresh_in_background(roots: tuple[Path, ...]) -> None:
    """One walk at a time per set of roots, on a thread of its own: no page run waits for it."""
    with _listing_lock:
        if roots in _refreshing:
            return
        _refreshing.add(roots)
    threading.Thread(target=_walk_and_keep, args=(roots,), name="cleaner-list-npz", daemon=True).start()


@dataclass
class _Listing:
    walked_at: float
    folders: dict[str, int] = field(default_factory=dict)  # folder -> its modification time before it was read
    files: list[Path] = field(default_factory=list)
    complete: bool = True  # False: a folder was missing or unreadable, so the next run walks again


_listing_lock = threading.Lock()
_listings: dict[tuple[Path, ...], _Listing] = {}
_refreshing: set[tuple[Path, ...]] = set()  # roots being walked again in the background
_walk_locks: dict[tuple[Path, ...], threading.Lock] = {}


def _unchanged(folders: dict[str, int]) -> bool:
    try:
        return all(os.stat(folder).st_mtime_ns == mtime for folder, mtime in folders.items())
    except OSError:
        return False


def _walk(roots: tuple[Path, ...]) -> _Listing:
    listing = _Listing(walked_at=time.monotonic())

    def note(folder: str) -> None:  # before its entries are read: a change while they are read shows next time
        try:
            listing.folders[folder] = os.stat(folder).st_mtime_ns
        except OSError:
            listing.complete = False

    def failed(_: OSError) -> None:
        listing.complete = False

    for root in roots:
        note(str(root))
        for dirpath, dirnames, filenames in os.walk(root, onerror=failed):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in dirnames:
                note(os.path.join(dirpath, name))
            npz = [n for n in sorted(filenames) if n.endswith(".npz") and not n.endswith(SIDECAR_SUFFIX)]
            if looks_like_shards(npz):  # sidecars go with their NPZ (or folder of shards), never listed
                npz = [""]  # the folder itself
            for name in npz:
                real = real_path_inside(Path(dirpath) / name if name else Path(dirpath), roots)
                if real is not None:
                    listing.files.append(real)
                if len(listing.files) >= MAX_LISTED_NPZ:
                    return listing
    return listing
