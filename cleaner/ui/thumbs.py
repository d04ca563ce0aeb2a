"""Thumbnails as data URLs: they travel inside the signed-in session's own messages.

Streamlit's media endpoint (`/media/<id>`) serves an image to anyone holding its URL, signed in or not; an image
sent inline never gets such a URL.
"""

from __future__ import annotations

import base64
import functools

from cleaner.io.images import ImageAccess, Thumbnail, load_thumbnail


@functools.lru_cache(maxsize=2048)  # a thumbnail's URL is a few KB: bounded server memory
def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def thumbnail(raw_path: str, access: ImageAccess) -> tuple[str, Thumbnail]:
    """The image's thumbnail (or a placeholder that says why) and its data URL for `st.image`."""
    thumb = load_thumbnail(raw_path, access)
    return _data_url(thumb.png), thumb
