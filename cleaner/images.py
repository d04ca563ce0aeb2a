"""Image access: resolve a dataset path safely, then read a bounded thumbnail or say why not."""
from __future__ import annotations

import functools
import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFile

MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_IMAGE_PIXELS = 64_000_000
THUMB_PX = 160

# Pillow's own guard: raise (not warn) on anything over the pixel cap.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageUnavailable(Exception):
    """Why an image cannot be shown, in words for the user."""


@dataclass(frozen=True)
class PathRemap:
    """Rewrite a path prefix from the machine that made the NPZ to where the images are here."""

    old_prefix: str
    new_prefix: str

    def apply(self, path: str) -> str:
        if self.old_prefix and path.startswith(self.old_prefix):
            return self.new_prefix + path[len(self.old_prefix):]
        return path


@dataclass(frozen=True)
class ImageAccess:
    """Which folders may be read, and how to rewrite paths first."""

    allowed_roots: tuple[Path, ...]
    remaps: tuple[PathRemap, ...] = ()

    def resolve(self, raw_path: str) -> Path:
        """The real path of an image, or ImageUnavailable if it is outside the allowed folders or not a file."""
        path = raw_path
        for remap in self.remaps:
            path = remap.apply(path)
        if not os.path.isabs(path):
            raise ImageUnavailable("relative path: the NPZ must hold absolute paths")
        try:
            real = Path(os.path.realpath(path))  # follows symlinks, folds '..'
        except (OSError, ValueError) as exc:
            raise ImageUnavailable(f"bad path ({exc})") from exc
        if not any(_is_within(real, root) for root in self.allowed_roots):
            raise ImageUnavailable("outside the folders this server may read")
        try:
            st = os.stat(real)
        except FileNotFoundError:
            raise ImageUnavailable("file not found") from None
        except OSError as exc:
            raise ImageUnavailable(f"cannot read ({exc.strerror or exc})") from exc
        if stat.S_ISDIR(st.st_mode):
            raise ImageUnavailable("is a folder, not an image")
        if not stat.S_ISREG(st.st_mode):
            raise ImageUnavailable("not a regular file")
        if st.st_size == 0:
            raise ImageUnavailable("empty file")
        if st.st_size > MAX_IMAGE_BYTES:
            raise ImageUnavailable(f"file too large ({st.st_size / 1e6:.0f} MB)")
        return real


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class Thumbnail:
    png: bytes
    ok: bool
    reason: str = ""  # why the image could not be shown (empty when ok)


def read_image(path: Path) -> Image.Image:
    """Fully decode an image file with Pillow's bomb guard and a pixel cap, or raise ImageUnavailable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise ImageUnavailable(f"too many pixels ({img.width}x{img.height})")
                img.draft("RGB", (THUMB_PX * 2, THUMB_PX * 2))  # JPEG: decode at reduced size
                img.load()
                return img.copy()
    except ImageUnavailable:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageUnavailable("refused: decompression bomb (too many pixels)") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageUnavailable("not an image Pillow can read") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageUnavailable(f"corrupt or truncated image ({exc})") from exc
    except MemoryError as exc:
        raise ImageUnavailable("image too large to decode") from exc


def _thumbnail_png(img: Image.Image, size: int) -> bytes:
    img = img.convert("RGBA") if img.mode in ("P", "LA", "RGBA", "PA") else img.convert("RGB")
    # Upscale tiny images (e.g. 8x8 digits) with NEAREST so their pixels stay visible.
    if max(img.size) < size:
        factor = max(1, size // max(img.size))
        img = img.resize((img.width * factor, img.height * factor), Image.NEAREST)
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def placeholder_png(reason: str, size: int = THUMB_PX) -> bytes:
    """A grey tile that says why the image is missing."""
    img = Image.new("RGB", (size, size), (225, 225, 225))
    draw = ImageDraw.Draw(img)
    draw.line([(0, 0), (size, size)], fill=(190, 190, 190), width=2)
    draw.line([(0, size), (size, 0)], fill=(190, 190, 190), width=2)
    words, lines, line = reason.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > 22:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    y = max(4, size // 2 - 7 * len(lines))
    for text in lines[:8]:
        draw.rectangle([4, y - 1, size - 4, y + 12], fill=(225, 225, 225))
        draw.text((8, y), text, fill=(120, 0, 0))
        y += 14
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@functools.lru_cache(maxsize=4096)
def _cached_thumbnail(real_path: str, mtime_ns: int, file_size: int, size: int) -> Thumbnail:
    try:
        img = read_image(Path(real_path))
        return Thumbnail(png=_thumbnail_png(img, size), ok=True)
    except ImageUnavailable as exc:
        return Thumbnail(png=placeholder_png(str(exc), size), ok=False, reason=str(exc))


def load_thumbnail(raw_path: str, access: ImageAccess, size: int = THUMB_PX) -> Thumbnail:
    """A PNG thumbnail of the image, or a placeholder that says why it cannot be shown. Never raises."""
    try:
        real = access.resolve(raw_path)
        st = os.stat(real)
    except ImageUnavailable as exc:
        return Thumbnail(png=placeholder_png(str(exc), size), ok=False, reason=str(exc))
    except OSError as exc:
        reason = f"cannot read ({exc.strerror or exc})"
        return Thumbnail(png=placeholder_png(reason, size), ok=False, reason=reason)
    # Keyed on mtime and size so an edited file is read again.
    return _cached_thumbnail(str(real), st.st_mtime_ns, st.st_size, size)


def check_readable(raw_path: str, access: ImageAccess) -> str:
    """Empty string if the image decodes, else the reason it does not (used by the unreadable-image score)."""
    try:
        read_image(access.resolve(raw_path))
        return ""
    except ImageUnavailable as exc:
        return str(exc)
