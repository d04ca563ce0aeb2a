"""Image access: resolve a dataset path safely, then read a bounded thumbnail or say why not."""

from __future__ import annotations

import functools
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFile, ImageOps

from cleaner.io import bounded_read as br
from cleaner.server.limits import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from cleaner.server.text import mb, one_line

THUMB_PX = 160


def configure_pillow() -> None:
    """Pillow's process-wide guards, set where the app or the CLI starts (a notebook importing cleaner keeps its
    own): Pillow then refuses (DecompressionBombError) anything over twice MAX_IMAGE_PIXELS at open, and never
    decodes a truncated file as if whole. `read_image` refuses anything over MAX_IMAGE_PIXELS either way."""
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES = False


# Raster formats that image datasets use. Pillow's other plugins (EPS runs Ghostscript; PSD, FITS, SPIDER,
# ...) are more attack surface than any dataset needs.
_DATASET_FORMATS = ("PNG", "JPEG", "MPO", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM", "TGA", "ICO", "AVIF")
Image.init()
IMAGE_FORMATS: tuple[str, ...] = tuple(f for f in _DATASET_FORMATS if f in Image.OPEN)


class ImageUnavailable(Exception):
    """Why an image cannot be shown, in words for the user."""


@dataclass(frozen=True)
class PathRemap:
    """Rewrite a path prefix from the machine that made the NPZ to where the images are here."""

    old_prefix: str
    new_prefix: str

    def apply(self, path: str) -> str:
        if self.old_prefix and path.startswith(self.old_prefix):
            return self.new_prefix + path[len(self.old_prefix) :]
        return path


@dataclass(frozen=True)
class ImageAccess:
    """Which folders may be read, and how to rewrite paths first."""

    allowed_roots: tuple[Path, ...]
    remaps: tuple[PathRemap, ...] = ()

    def resolve(self, raw_path: str) -> Path:
        """The real path of an image, or ImageUnavailable if it is outside the allowed folders or not a file."""
        if not isinstance(raw_path, str):
            raise ImageUnavailable("not a path")
        path = raw_path
        for remap in self.remaps:
            path = remap.apply(path)
        if not path.strip():
            raise ImageUnavailable("empty path")
        if "\x00" in path:
            raise ImageUnavailable("bad path (it contains a NUL character)")
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
        except (OSError, ValueError) as exc:
            raise ImageUnavailable(f"cannot read ({getattr(exc, 'strerror', None) or exc})") from exc
        _check_stat(st)
        return real


def _check_stat(st: os.stat_result) -> None:
    try:
        br.check_regular(st, MAX_IMAGE_BYTES)
    except br.ReadRefused as refusal:
        raise ImageUnavailable(_refusal_reason(refusal)) from None
    if st.st_size == 0:
        raise ImageUnavailable("empty file")


def _refusal_reason(refusal: br.ReadRefused) -> str:
    """A bounded read's refusal in the words a thumbnail's placeholder shows."""
    if refusal.kind == br.MISSING:
        return "file not found"
    if refusal.kind == br.FOLDER:
        return "is a folder, not an image"
    if refusal.kind == br.NOT_REGULAR:
        return "not a regular file (a device, pipe or socket)"
    if refusal.kind == br.TOO_LARGE:
        size = f"{mb(refusal.size)}; " if refusal.size is not None else ""
        return f"file too large ({size}the limit is {mb(MAX_IMAGE_BYTES)})"
    return f"cannot read ({refusal.detail or refusal.kind})"


def _is_within(path: Path, root: Path) -> bool:
    try:
        real_root = Path(os.path.realpath(root))  # a root given through a symlink still matches
    except (OSError, ValueError):
        return False
    return path == real_root or real_root in path.parents


def _read_file(path: Path) -> bytes:
    """The file's bytes, read once and never more than MAX_IMAGE_BYTES, from a regular file only.

    Checked again on the open descriptor, so a file swapped after resolve() (for a FIFO, a device or
    something huge) is still refused or bounded.
    """
    try:
        data = br.read_file(path, MAX_IMAGE_BYTES)
    except br.ReadRefused as refusal:
        raise ImageUnavailable(_refusal_reason(refusal)) from None
    if not data:
        raise ImageUnavailable("empty file")
    return data


@dataclass(frozen=True)
class Thumbnail:
    png: bytes
    ok: bool
    reason: str = ""  # why the image could not be shown (empty when ok)


def read_image(path: Path) -> Image.Image:
    """Fully decode an image file with Pillow's bomb guard and a pixel cap, upright, or raise ImageUnavailable.

    The file is read once (at most MAX_IMAGE_BYTES) and decoded from memory; only the raster formats in
    IMAGE_FORMATS are tried, and the pixel count is checked from the header before any pixel is decoded.
    Upright: turned as its EXIF orientation says (phones store photos sideways plus a "rotate 90°" tag).
    """
    data = _read_file(path)
    try:
        # No warnings.catch_warnings() here: it is not thread-safe and Streamlit sessions are threads.
        # Pillow raises DecompressionBombError itself above 2x its cap; the check below refuses 1x-2x.
        img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        if img.width * img.height > MAX_IMAGE_PIXELS:
            raise ImageUnavailable(f"refused: too many pixels ({img.width}x{img.height})")
        img.draft("RGB", (THUMB_PX * 2, THUMB_PX * 2))  # JPEG: decode at reduced size
        img.load()
        _turn_upright(img)
        return img
    except ImageUnavailable:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageUnavailable("refused: decompression bomb (too many pixels)") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageUnavailable("not an image Pillow can read") from exc
    except MemoryError as exc:
        raise ImageUnavailable("image too large to decode") from exc
    except Exception as exc:  # OSError, SyntaxError, ValueError, EOFError, struct.error... from a bad file
        raise ImageUnavailable(f"corrupt or truncated image ({one_line(exc, 120)})") from exc


def _turn_upright(img: Image.Image) -> None:
    """Apply the EXIF orientation in place, so the image shows as the camera meant it."""
    try:
        ImageOps.exif_transpose(img, in_place=True)
    except Exception:  # noqa: BLE001 - a damaged EXIF block: the pixels are fine, show them as stored
        pass


def _thumbnail_png(img: Image.Image, size: int) -> bytes:
    """Shrink first, in the image's own mode where Pillow can, then convert: memory stays near the decoded size.

    Resizes `img` in place (callers pass the image read_image just decoded)."""
    if img.mode.startswith("I;16"):
        img = img.convert("I")  # 16-bit: Pillow cannot reduce it directly
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode == "P":
        if max(img.size) > 4 * size:
            img.thumbnail((4 * size, 4 * size), Image.NEAREST)  # palette images only resize NEAREST
        img = img.convert("RGBA")
    # Upscale tiny images (e.g. 8x8 digits) with NEAREST so their pixels stay visible.
    if max(img.size) < size:
        factor = max(1, size // max(img.size))
        img = img.resize((img.width * factor, img.height * factor), Image.NEAREST)
    img.thumbnail((size, size))  # in place: the image is this call's own
    if img.mode in ("I", "F"):
        img = _stretch_to_8bit(img)
    img = img.convert("RGBA") if img.mode in ("LA", "RGBA", "PA", "RGBa") else img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _stretch_to_8bit(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float images: map their own range to 0-255 instead of clipping to white."""
    arr = np.asarray(img, dtype=np.float64)
    finite = np.isfinite(arr)
    lo, hi = (float(arr[finite].min()), float(arr[finite].max())) if finite.any() else (0.0, 1.0)
    scaled = np.where(finite, (arr - lo) * (255.0 / (hi - lo if hi > lo else 1.0)), 0.0)
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), mode="L")


@functools.lru_cache(maxsize=256)  # a few hundred bytes each; a missing folder gives every tile the same reason
def placeholder_png(reason: str, size: int = THUMB_PX) -> bytes:
    """A grey tile that says why the image is missing."""
    img = Image.new("RGB", (size, size), (225, 225, 225))
    draw = ImageDraw.Draw(img)
    draw.line([(0, 0), (size, size)], fill=(190, 190, 190), width=2)
    draw.line([(0, size), (size, 0)], fill=(190, 190, 190), width=2)
    reason = reason.encode("ascii", "replace").decode("ascii")  # the default bitmap font is Latin-1 only
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


@functools.lru_cache(maxsize=1024)  # ~50 KB a thumbnail at most: bounded server memory
def _cached_thumbnail(real_path: str, mtime_ns: int, file_size: int, size: int) -> Thumbnail:
    try:
        img = read_image(Path(real_path))
        try:
            png = _thumbnail_png(img, size)
        except MemoryError as exc:
            raise ImageUnavailable("image too large to make a thumbnail") from exc
        except Exception as exc:  # an unusual mode Pillow cannot convert
            raise ImageUnavailable(f"cannot make a thumbnail ({one_line(exc, 120)})") from exc
        return Thumbnail(png=png, ok=True)
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
