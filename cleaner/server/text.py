"""Short texts for messages people read: an error on one line, a name as it may be shown, a byte count."""

from __future__ import annotations

from cleaner.server.limits import MB

MAX_SHOWN_CHARS = 120


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message on one line of at most `limit` characters (its type's name if it has none)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown(text: object) -> str:
    """A path or name as it may appear in a message: short, and with control characters escaped."""
    text = str(text)
    if len(text) > MAX_SHOWN_CHARS:
        half = MAX_SHOWN_CHARS // 2
        text = f"{text[:half]}…{text[-half:]}"
    return text if text.isprintable() else repr(text)[1:-1]


def mb(nbytes: int) -> str:
    """A byte count for people: '3.2 MB', '512 kB', '40 bytes'; MB as in the server's settings (1024 * 1024)."""
    megabytes = nbytes / MB
    if megabytes >= 10:
        return f"{megabytes:,.0f} MB"
    if megabytes >= 1:
        return f"{megabytes:.1f} MB"
    if nbytes >= 10_000:
        return f"{nbytes / 1024:.0f} kB"
    return f"{nbytes:,} bytes"


def plural(n: int, one: str, many: str | None = None) -> str:
    """'1 sample', '3 samples' (many defaults to one + 's')."""
    return f"{n:,} {one if n == 1 else (many or one + 's')}"
