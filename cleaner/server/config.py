"""Server configuration, read once from environment variables (one place, safe defaults)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cleaner.server.errors import CleanerError
from cleaner.server.limits import CACHE_MAX_BYTES, MAP_LIMIT, MAX_DIMS, MAX_NPZ_BYTES, MAX_ROWS, MB

ENV_ALLOWED_ROOTS = "CLEANER_ALLOWED_ROOTS"
ENV_CACHE_DIR = "CLEANER_CACHE_DIR"
ENV_MAX_NPZ_MB = "CLEANER_MAX_NPZ_MB"
ENV_MAX_ROWS = "CLEANER_MAX_ROWS"
ENV_MAX_DIMS = "CLEANER_MAX_DIMS"
ENV_MAP_LIMIT = "CLEANER_MAP_LIMIT"
ENV_CACHE_MAX_MB = "CLEANER_CACHE_MAX_MB"
ENV_ALLOWED_USERS = "CLEANER_ALLOWED_USERS"
ENV_DATABASE_URL = "CLEANER_DATABASE_URL"  # where decisions are kept; unset: SQLite under the cache folder
ALLOW_ANY_SIGNED_IN = "*"  # an allow-list entry that lets in every user the sign-in provider accepts


class ConfigError(CleanerError, ValueError):
    """A server setting (an environment variable) that cannot be used as given."""


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cleaner"


def _int_env(env: os._Environ[str] | dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def parse_allowed_users(raw: str) -> tuple[str, ...]:
    """The allow-list: e-mail addresses and `@domain` entries, comma- or whitespace-separated, lower-cased."""
    entries: list[str] = []
    for entry in re.split(r"[\s,]+", raw.strip().lower()):
        if not entry:
            continue
        local, at, domain = entry.rpartition("@")
        is_domain = entry.startswith("@") and entry.count("@") == 1 and domain
        is_address = at and local and domain and "@" not in local
        if entry != ALLOW_ANY_SIGNED_IN and not (is_domain or is_address):
            raise ConfigError(
                f"{ENV_ALLOWED_USERS}: {entry!r} is neither an e-mail address (ann@example.com) "
                f"nor a whole domain (@example.com)"
            )
        if entry not in entries:
            entries.append(entry)
    return tuple(entries)


@dataclass(frozen=True)
class Settings:
    """Limits and folders the server enforces for every user."""

    allowed_roots: tuple[Path, ...] = ()
    cache_dir: Path = field(default_factory=_default_cache_dir)
    max_npz_bytes: int = MAX_NPZ_BYTES  # the file, and separately the decompressed arrays together
    max_rows: int = MAX_ROWS
    max_dims: int = MAX_DIMS
    cache_max_bytes: int = CACHE_MAX_BYTES
    map_limit: int = MAP_LIMIT  # points the map draws; a larger dataset shows the scan's map sample
    allowed_users: tuple[str, ...] = ()  # who may use the app when sign-in is on; empty: nobody, "*": anyone
    # A SQLAlchemy URL (postgresql+psycopg://user:password@host/db); "" for SQLite under the cache folder. Left out
    # of the repr: it may hold a password, which is never shown or logged.
    database_url: str = field(default="", repr=False)

    @property
    def demo_dir(self) -> Path:
        return self.cache_dir / "demo"

    @property
    def readable_roots(self) -> tuple[Path, ...]:
        """Folders images and NPZ files may be read from: the configured roots plus the demo's own."""
        return tuple(self.allowed_roots) + (self.demo_dir.resolve(),)


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Settings from the environment; unset variables keep the safe defaults."""
    env = os.environ if environ is None else environ
    roots = tuple(Path(p).expanduser().resolve() for p in env.get(ENV_ALLOWED_ROOTS, "").split(os.pathsep) if p.strip())
    cache_dir = Path(env[ENV_CACHE_DIR]).expanduser() if env.get(ENV_CACHE_DIR) else _default_cache_dir()
    return Settings(
        allowed_roots=roots,
        cache_dir=cache_dir.resolve(),
        max_npz_bytes=_int_env(env, ENV_MAX_NPZ_MB, MAX_NPZ_BYTES // MB) * MB,
        max_rows=_int_env(env, ENV_MAX_ROWS, MAX_ROWS),
        max_dims=_int_env(env, ENV_MAX_DIMS, MAX_DIMS),
        cache_max_bytes=_int_env(env, ENV_CACHE_MAX_MB, CACHE_MAX_BYTES // MB) * MB,
        map_limit=_int_env(env, ENV_MAP_LIMIT, MAP_LIMIT),
        allowed_users=parse_allowed_users(env.get(ENV_ALLOWED_USERS, "")),
        database_url=env.get(ENV_DATABASE_URL, "").strip(),
    )
