"""ImageAccess path safety and image decoding: a Thumbnail with ok=True for real images inside the
allowed roots, and ok=False with a clear reason (never an exception, never a hang) for everything else."""

from __future__ import annotations

import io
import os
import resource
import socket
import stat
import struct
import threading
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cleaner.io import images
from cleaner.io.images import (
    THUMB_PX,
    ImageAccess,
    ImageUnavailable,
    PathRemap,
    Thumbnail,
    check_readable,
    load_thumbnail,
    read_image,
)
from cleaner.server.limits import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS

pytestmark = pytest.mark.timeout(60)  # a FIFO that blocks must fail the test, not hang the run


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def root(tmp_path) -> Path:
    path = (tmp_path / "root").resolve()
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path) -> Path:
    path = (tmp_path / "outside").resolve()
    path.mkdir()
    return path


@pytest.fixture
def access(root) -> ImageAccess:
    return ImageAccess(allowed_roots=(root,))


def save(img: Image.Image, path: Path, fmt: str = "PNG", **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt, **kwargs)
    return path


def photo(size=(64, 48), mode="RGB") -> Image.Image:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB").convert(mode)


def shown(thumb: Thumbnail) -> Image.Image:
    img = Image.open(io.BytesIO(thumb.png))
    img.load()
    assert img.format == "PNG"
    return img


def assert_ok(thumb: Thumbnail) -> Image.Image:
    assert thumb.ok, thumb.reason
    assert thumb.reason == ""
    img = shown(thumb)
    assert max(img.size) <= THUMB_PX
    return img


def assert_refused(thumb: Thumbnail, *words: str) -> str:
    assert not thumb.ok
    assert thumb.reason, "a refusal must say why"
    for word in words:
        assert word in thumb.reason, thumb.reason
    assert shown(thumb).size == (THUMB_PX, THUMB_PX)  # the placeholder tile
    return thumb.reason


def refused(raw_path, access: ImageAccess, *words: str) -> str:
    """Refused by load_thumbnail and by check_readable, with the same reason."""
    reason = assert_refused(load_thumbnail(raw_path, access), *words)
    assert check_readable(raw_path, access) == reason
    return reason


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of width x height black pixels, built without ever holding its pixels:
    one fully flushed deflate block of 64 zero rows, repeated. 30000 x 30000 comes to ~100 kB."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    rows_per_block = 64
    block = row * rows_per_block
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    blocks, rest = divmod(height, rows_per_block)
    tail_comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    tail = tail_comp.compress(row * rest) + tail_comp.flush(zlib.Z_FINISH)
    adler = 1
    for _ in range(blocks):
        adler = zlib.adler32(block, adler)
    adler = zlib.adler32(row * rest, adler)
    stream = b"\x78\xda" + packed * blocks + tail + struct.pack(">I", adler)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", stream) + png_chunk(b"IEND", b"")


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


# ---------------------------------------------------------------- the guard is on


def test_importing_cleaner_leaves_pillow_alone_and_the_app_start_sets_its_guard():
    import subprocess
    import sys

    code = (
        "from PIL import Image; before = Image.MAX_IMAGE_PIXELS; import cleaner.io.images as m; "
        "print(before == Image.MAX_IMAGE_PIXELS); m.configure_pillow(); print(Image.MAX_IMAGE_PIXELS)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout.split()
    assert out == ["True", str(MAX_IMAGE_PIXELS)]
    assert "EPS" not in images.IMAGE_FORMATS and "PNG" in images.IMAGE_FORMATS and "JPEG" in images.IMAGE_FORMATS


# ---------------------------------------------------------------- images that load


@pytest.mark.parametrize(
    "name, make",
    [
        ("rgb.png", lambda p: save(photo(), p)),
        ("rgba.png", lambda p: save(photo(mode="RGBA"), p)),
        ("gray.png", lambda p: save(photo(mode="L"), p)),
        ("la.png", lambda p: save(photo(mode="LA"), p)),
        ("palette.gif", lambda p: save(photo(mode="P"), p, "GIF")),
        ("photo.jpg", lambda p: save(photo((640, 480)), p, "JPEG")),
        ("cmyk.jpg", lambda p: save(photo(mode="CMYK"), p, "JPEG")),
        ("bits.png", lambda p: save(photo(mode="1"), p)),
        ("pic.bmp", lambda p: save(photo(), p, "BMP")),
        ("pic.tiff", lambda p: save(photo(), p, "TIFF")),
        ("pic.webp", lambda p: save(photo(), p, "WEBP")),
        ("tiny.png", lambda p: save(photo((8, 8), "L"), p)),
        ("wide.png", lambda p: save(photo((2000, 3)), p)),
        ("no-extension", lambda p: save(photo(), p)),
    ],
)
def test_images_inside_the_root_load(root, access, name, make):
    path = make(root / "sub" / name)
    img = assert_ok(load_thumbnail(str(path), access))
    assert check_readable(str(path), access) == ""
    if name == "tiny.png":
        assert img.size == (160, 160)  # upscaled with NEAREST so its pixels show
    if name == "wide.png":
        assert img.width == THUMB_PX


def test_16_bit_image_is_stretched_not_white(root, access):
    ramp = np.tile(np.linspace(0, 4000, 200, dtype=np.uint16), (50, 1))  # well above 255, far below 65535
    path = save(Image.fromarray(ramp), root / "depth.png")
    assert Image.open(path).mode.startswith("I")
    img = np.asarray(assert_ok(load_thumbnail(str(path), access)).convert("L"))
    assert img.min() < 30 and img.max() > 220


def test_large_but_allowed_image_is_thumbnailed(root, access):
    path = save(Image.new("1", (6000, 4000), 1), root / "scan.png")  # 24 M pixels, under the cap
    assert path.stat().st_size < 100_000
    img = assert_ok(load_thumbnail(str(path), access))
    assert img.size == (160, 107)


# EXIF orientation -> quarter turns anticlockwise (np.rot90's k) that show the stored pixels upright
ORIENTATION_TURNS = {1: 0, 3: 2, 6: -1, 8: 1}


def stripes_jpeg(path: Path, orientation: int) -> np.ndarray:
    """A 40x20 JPEG, left half red and right half blue, with an EXIF orientation; returns its stored pixels."""
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20] = (220, 20, 20)
    arr[:, 20:] = (20, 20, 220)
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    save(Image.fromarray(arr), path, "JPEG", quality=95, exif=exif.tobytes())
    with Image.open(path) as stored:
        assert stored.getexif()[0x0112] == orientation
        return np.asarray(stored.convert("RGB"))


@pytest.mark.parametrize("orientation", sorted(ORIENTATION_TURNS))
def test_exif_orientation_is_applied_before_the_thumbnail(root, access, orientation):
    path = root / f"phone_{orientation}.jpg"
    stored = stripes_jpeg(path, orientation)
    upright = np.rot90(stored, k=ORIENTATION_TURNS[orientation])
    assert read_image(path).size == (upright.shape[1], upright.shape[0])
    factor = THUMB_PX // max(upright.shape[:2])  # tiny images are enlarged with NEAREST: exact pixel copies
    expected = upright.repeat(factor, axis=0).repeat(factor, axis=1)
    shown_px = np.asarray(assert_ok(load_thumbnail(str(path), access)).convert("RGB"))
    assert shown_px.shape == expected.shape
    assert np.abs(shown_px.astype(int) - expected.astype(int)).max() <= 2


def test_orientation_6_turns_a_landscape_photo_to_portrait_red_on_top(root, access):
    """The phone case of issue 12: stored sideways with "rotate 90° clockwise"; its left edge belongs on top."""
    path = root / "sideways.jpg"
    stored = stripes_jpeg(path, 6)
    assert stored.shape[:2] == (20, 40)  # landscape as stored
    img = np.asarray(assert_ok(load_thumbnail(str(path), access)).convert("RGB")).astype(int)
    height, width = img.shape[:2]
    assert height == 2 * width == THUMB_PX  # portrait as shown
    top, bottom = img[: height // 2].mean(axis=(0, 1)), img[height // 2 :].mean(axis=(0, 1))
    assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0]


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # Pillow's own word on this file
def test_unreadable_exif_block_still_shows_the_pixels(root, access):
    path = root / "bad_exif.jpg"
    save(photo(), path, "JPEG", exif=b"Exif\x00\x00MM\x00*\xff\xff\xff\xff")  # IFD offset past the end
    assert_ok(load_thumbnail(str(path), access))
    assert check_readable(str(path), access) == ""


def test_thumbnails_follow_edits(root, access):
    path = save(photo(), root / "edit.png")
    assert load_thumbnail(str(path), access).ok
    path.write_bytes(b"now it is text")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert_refused(load_thumbnail(str(path), access), "not an image")


# ---------------------------------------------------------------- paths that escape


def test_dot_dot_and_absolute_paths_elsewhere(root, outside, access):
    secret = save(photo(), outside / "secret.png")
    refused(f"{root}/../outside/secret.png", access, "outside the folders")
    refused(f"{root}/a/b/../../../outside/secret.png", access, "outside the folders")
    refused(str(secret), access, "outside the folders")
    refused("/etc/passwd", access, "outside the folders")
    refused("/", access, "outside the folders")
    refused(f"{root}-evil/x.png", access, "outside the folders")  # a prefix of the root is not inside it


def test_symlinks_pointing_out(root, outside, access):
    secret = save(photo(), outside / "secret.png")
    (root / "to_file.png").symlink_to(secret)
    (root / "to_dir").symlink_to(outside, target_is_directory=True)
    refused(str(root / "to_file.png"), access, "outside the folders")
    refused(str(root / "to_dir" / "secret.png"), access, "outside the folders")
    (root / "dangling_out.png").symlink_to(outside / "missing.png")
    refused(str(root / "dangling_out.png"), access, "outside the folders")


def test_symlink_chains(root, outside, access):
    real = save(photo(), root / "real.png")
    (root / "b.png").symlink_to(real)
    (root / "a.png").symlink_to(root / "b.png")
    assert_ok(load_thumbnail(str(root / "a.png"), access))
    secret = save(photo(), outside / "secret.png")
    (root / "d.png").symlink_to(secret)
    (root / "c.png").symlink_to("d.png")  # relative link, then out
    refused(str(root / "c.png"), access, "outside the folders")
    (root / "loop1.png").symlink_to(root / "loop2.png")
    (root / "loop2.png").symlink_to(root / "loop1.png")
    refused(str(root / "loop1.png"), access, "cannot read")
    (root / "dangling.png").symlink_to(root / "nothing.png")
    refused(str(root / "dangling.png"), access, "file not found")


def test_root_given_through_a_symlink_still_matches(tmp_path, root):
    path = save(photo(), root / "ok.png")
    link = tmp_path / "link_to_root"
    link.symlink_to(root, target_is_directory=True)
    assert_ok(load_thumbnail(str(path), ImageAccess(allowed_roots=(link,))))
    assert_ok(load_thumbnail(str(link / "ok.png"), ImageAccess(allowed_roots=(link,))))


def test_no_roots_means_nothing_is_readable(root):
    path = save(photo(), root / "ok.png")
    refused(str(path), ImageAccess(allowed_roots=()), "outside the folders")


@pytest.mark.parametrize(
    "raw, words",
    [
        ("img.png", ["relative path"]),
        ("./img.png", ["relative path"]),
        ("~/img.png", ["relative path"]),
        ("", ["empty path"]),
        ("   ", ["empty path"]),
        ("{root}/a\x00b.png", ["NUL"]),
        ("{root}/" + "a" * 5000 + ".png", ["cannot read", "too long"]),
        ("{root}/" + "/".join(["d"] * 3000), ["cannot read"]),
        ("{root}/missing.png", ["file not found"]),
        ("{root}/\udcff.png", ["file not found"]),  # an undecodable byte, as os.fsdecode gives it
        ("{root}/\ud800.png", ["bad path"]),  # a lone surrogate cannot become a file name
    ],
    ids=[
        "relative",
        "dot-relative",
        "tilde",
        "empty",
        "blank",
        "nul",
        "long-name",
        "deep",
        "missing",
        "surrogate-escape",
        "lone-surrogate",
    ],
)
def test_odd_paths(root, access, raw, words):
    refused(raw.format(root=root), access, *words)


def test_non_string_path_is_refused(access):
    assert_refused(load_thumbnail(None, access), "not a path")  # type: ignore[arg-type]
    assert check_readable(b"/x.png", access) == "not a path"  # type: ignore[arg-type]


# ---------------------------------------------------------------- things that are not image files


def test_directory(root, access):
    (root / "folder.png").mkdir()
    refused(str(root / "folder.png"), access, "is a folder")
    refused(str(root), access, "is a folder")


def test_fifo_never_blocks(root, access):
    fifo = root / "pipe.png"
    os.mkfifo(fifo)
    refused(str(fifo), access, "not a regular file")  # a blocking open would hang: the module's timeout fails it
    with pytest.raises(ImageUnavailable, match="not a regular file"):
        read_image(fifo)  # even without resolve(): opened non-blocking, refused by fstat


def test_socket_is_refused(root, access):
    path = root / "s.png"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        refused(str(path), access, "not a regular file")


def test_device_files(root, access):
    refused("/dev/zero", access, "outside the folders")
    refused("/dev/null", access, "outside the folders")
    (root / "zero.png").symlink_to("/dev/zero")
    refused(str(root / "zero.png"), access, "outside the folders")
    dev_access = ImageAccess(allowed_roots=(Path("/dev"),))
    refused("/dev/zero", dev_access, "not a regular file")
    refused("/dev/urandom", dev_access, "not a regular file")
    with pytest.raises(ImageUnavailable, match="not a regular file"):
        read_image(Path("/dev/zero"))  # an endless file, refused before any read


def test_device_node_inside_the_root(root, access):
    node = root / "zero.png"
    try:
        os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero's numbers
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a device node here: {exc}")
    refused(str(node), access, "not a regular file")


def test_empty_truncated_and_fake_files(root, access):
    (root / "empty.png").write_bytes(b"")
    refused(str(root / "empty.png"), access, "empty file")
    good = io.BytesIO()
    photo((300, 200)).save(good, "PNG")
    data = good.getvalue()
    for cut in (8, 40, len(data) // 2, len(data) - 100):  # every cut that loses pixel data
        (root / f"cut{cut}.png").write_bytes(data[:cut])
        reason = refused(str(root / f"cut{cut}.png"), access)
        assert "corrupt or truncated" in reason or "not an image" in reason
    (root / "no_iend.png").write_bytes(data[:-12])  # only the IEND chunk lost: every pixel is there
    assert_ok(load_thumbnail(str(root / "no_iend.png"), access))
    (root / "text.png").write_text("this is not a picture\n" * 10)
    refused(str(root / "text.png"), access, "not an image Pillow can read")
    (root / "zeros.png").write_bytes(b"\0" * 4096)
    refused(str(root / "zeros.png"), access, "not an image Pillow can read")


def test_formats_outside_the_dataset_list_are_not_tried(root, access):
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\nshowpage\n"
    (root / "doc.eps").write_bytes(eps)
    refused(str(root / "doc.eps"), access, "not an image Pillow can read")  # EPS would run Ghostscript
    save(photo(), root / "pic.pcx", "PCX")
    refused(str(root / "pic.pcx"), access, "not an image Pillow can read")


def test_file_over_the_byte_limit(root, access):
    big = root / "big.png"
    with open(big, "wb") as fh:
        fh.truncate(MAX_IMAGE_BYTES + 1)  # sparse: no disk used
    refused(str(big), access, "file too large")


# ---------------------------------------------------------------- decompression bombs


def test_decompression_bomb_is_refused_without_decoding(root, access):
    data = bomb_png(30_000, 30_000)  # 900 M pixels: ~113 MB as 1-bit, ~900 MB decoded by Pillow
    assert len(data) < 500_000
    guard, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:  # the bomb is real: with the guard off, Pillow accepts it and would decode 900 M pixels
        with Image.open(io.BytesIO(data)) as unguarded:
            assert unguarded.size == (30_000, 30_000) and unguarded.mode == "1"
    finally:
        Image.MAX_IMAGE_PIXELS = guard
    idat = data[data.index(b"IDAT") + 4 :]
    assert len(zlib.decompressobj().decompress(idat, 100_000)) == 100_000  # and its stream inflates
    bomb = root / "bomb.png"
    bomb.write_bytes(data)
    rss_before = max_rss_mb()
    refused(str(bomb), access, "decompression bomb")
    assert max_rss_mb() - rss_before < 200  # refused from the header: its pixels were never decoded


def test_bomb_just_over_the_cap_is_refused_too(root, access):
    """Pillow only warns between 1x and 2x its cap; read_image refuses there itself."""
    path = root / "big.png"
    path.write_bytes(bomb_png(8_500, 8_500))  # 72 M pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        reason = refused(str(path), access, "too many pixels")
    assert "8500x8500" in reason


def test_bomb_at_exactly_the_cap_is_allowed(root, access):
    side = int(MAX_IMAGE_PIXELS**0.5)
    path = root / "cap.png"
    path.write_bytes(bomb_png(side, side))
    assert side * side <= MAX_IMAGE_PIXELS
    assert_ok(load_thumbnail(str(path), access))


def test_bmp_declaring_huge_dimensions(root, access):
    header = struct.pack("<2sIHHI", b"BM", 54 + 16, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, 40_000, 40_000, 1, 24, 0, 16, 2835, 2835, 0, 0)
    (root / "huge.bmp").write_bytes(header + info + b"\0" * 16)
    refused(str(root / "huge.bmp"), access, "decompression bomb")


def test_png_text_chunk_bomb(root, access):
    """A zTXt chunk of 64 MB of zeros, ~64 kB compressed: Pillow caps text decompression."""
    good = io.BytesIO()
    photo().save(good, "PNG")
    data = good.getvalue()
    text = b"Comment\x00\x00" + zlib.compress(b"\0" * (64 * 1024 * 1024), 9)
    iend = data.rindex(b"IEND") - 4
    (root / "ztxt.png").write_bytes(data[:iend] + png_chunk(b"zTXt", text) + data[iend:])
    rss_before = max_rss_mb()
    thumb = load_thumbnail(str(root / "ztxt.png"), access)
    assert max_rss_mb() - rss_before < 100
    assert_refused(thumb, "too large")


# ---------------------------------------------------------------- prefix remaps


def test_remap_of_a_prefix(root, outside, access):
    save(photo(), root / "cats" / "1.png")
    moved = ImageAccess(allowed_roots=(root,), remaps=(PathRemap("/mnt/old_machine/data", str(root)),))
    assert_ok(load_thumbnail("/mnt/old_machine/data/cats/1.png", moved))
    assert_refused(load_thumbnail("/mnt/old_machine/data/cats/1.png", access), "outside the folders")
    unrelated = ImageAccess(allowed_roots=(root,), remaps=(PathRemap("/elsewhere", str(root)),))
    assert_refused(load_thumbnail("/mnt/old_machine/data/cats/1.png", unrelated), "outside the folders")
    save(photo(), outside / "cats" / "1.png")
    escape = ImageAccess(allowed_roots=(root,), remaps=(PathRemap("/mnt/old_machine/data", str(root) + "/.."),))
    assert_refused(load_thumbnail("/mnt/old_machine/data/outside/cats/1.png", escape), "outside the folders")
    relative = ImageAccess(allowed_roots=(root,), remaps=(PathRemap("/mnt/old_machine/data/", ""),))
    assert_refused(load_thumbnail("/mnt/old_machine/data/cats/1.png", relative), "relative path")
    assert PathRemap("", "/x").apply("/a/b.png") == "/a/b.png"  # an empty prefix remaps nothing


# ---------------------------------------------------------------- a file swapped after resolve()


def test_file_swapped_for_a_fifo_after_resolve(root, access):
    path = save(photo(), root / "swap.png")
    real = access.resolve(str(path))
    path.unlink()
    os.mkfifo(path)
    done = threading.Event()

    def read():
        with pytest.raises(ImageUnavailable, match="not a regular file"):
            read_image(real)
        done.set()

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(10)
    if not done.is_set():  # unblock a reader stuck in open() so the run can go on, then fail
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("read_image blocked on a FIFO")


def test_file_grown_after_resolve_is_still_bounded(root, access, monkeypatch):
    path = save(photo(), root / "grow.png")
    real = access.resolve(str(path))
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 1000)  # as if the file had grown past the limit
    with pytest.raises(ImageUnavailable, match="file too large"):
        read_image(real)


def test_placeholder_survives_any_reason_text():
    for reason in ("", "x" * 500, "naïve ünïcode ✓ 猫", "\x00\n\t", "word " * 200):
        img = Image.open(io.BytesIO(images.placeholder_png(reason)))
        assert img.size == (THUMB_PX, THUMB_PX)
