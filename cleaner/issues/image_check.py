"""The image files themselves: which ones cannot be opened and decoded, and a fingerprint of their state on disk."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from cleaner.io.images import ImageAccess, ImageUnavailable, check_readable
from cleaner.issues.unreadable import UnreadableImages
from cleaner.server.text import plural


def unreadable_images(image_paths: Sequence[str], access: ImageAccess, workers: int | None = None) -> UnreadableImages:
    """Try to open and decode every image (missing, empty, truncated, not an image, outside the allowed folders)."""
    paths = [str(p) for p in image_paths]
    # Reading is mostly waiting on the disk and Pillow's C decoders, which release the GIL: threads overlap it.
    workers = workers or min(16, 4 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        reasons = list(pool.map(lambda p: check_readable(p, access), paths, chunksize=64))
    reason = np.array(reasons, dtype=str) if reasons else np.array([], dtype=str)
    flagged = np.char.str_len(reason) > 0 if reasons else np.zeros(0, dtype=bool)
    count = int(flagged.sum())
    causes: dict[str, int] = {}
    for text in reason[flagged].tolist():
        key = text.split(" (")[0]  # "corrupt or truncated image (details)" counts as one cause
        causes[key] = causes.get(key, 0) + 1
    detail = ", ".join(
        f"{why}: {c:,}" for why, c in sorted(causes.items(), key=lambda kv: -kv[1])
    )  # no plural to get wrong
    return UnreadableImages(
        name="unreadable",
        score=flagged.astype(np.float32),
        flagged=flagged,
        summary=f"{plural(count, 'image')} cannot be read" + (f" ({detail})" if detail else ""),
        reason=reason,
    )


def files_fingerprint(image_paths: Sequence[str], access: ImageAccess) -> str:
    """A digest of where each image resolves to, its size and modification time: equal while no file changed.

    A stat per file, not a decode: cheap enough to confirm an earlier check still holds.
    """
    digest = hashlib.blake2b(digest_size=16)
    for raw in image_paths:
        try:
            real = access.resolve(str(raw))
            st = os.stat(real)
            digest.update(f"{real}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogatepass"))
        except (ImageUnavailable, OSError) as exc:
            digest.update(f"{raw}\0unavailable {type(exc).__name__}\n".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()
