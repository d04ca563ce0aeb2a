"""The retired autosave files: decision lists the server kept under the cache folder before the decision store
(cleaner/decisions/store.py) kept them in a database. Each is imported into the store once (`legacy` reads it,
`retire` renames it once the store has its decisions) and never written again by the app.

What follows describes the files as they were written:

Each saved list belongs to one secret: a token the user holds (shown to them, never stored in clear) or, when
signed in, their e-mail address. The file name is a hash of the secret and the dataset's digest, so nobody
without the secret can name, let alone read, someone else's list, and the folder can never be listed through
the page. Each file carries an HMAC of its content under a key derived from the secret: a file changed on
disk (or written for another secret or dataset) is rejected with a message. Writes are atomic and bounded.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cleaner.decisions.records import Decisions, ParsedDecisions, parse_decisions
from cleaner.server.diskcache import evict_oldest, write_atomically
from cleaner.server.errors import CleanerError
from cleaner.server.limits import MB

FOLDER_NAME = "autosave"
IMPORTED_SUFFIX = ".imported"  # a list the decision store has taken in: kept on disk, never read again
MAGIC = b"cleaner-autosave v1\n"
MAX_FILE_BYTES = 32 * MB  # about 200k decisions with long paths; beyond it the user must download instead
MAX_TOTAL_BYTES = 512 * MB  # the folder; the lists written least recently go first beyond it
TOKEN_BYTES = 12  # 96 bits nobody guesses, yet short enough to copy
TOKEN_CHARS = 16  # TOKEN_BYTES in URL-safe base64
_TOKEN_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_MAC_HEX = 64  # the HMAC-SHA256 line, in hex


class AutosaveError(CleanerError):
    """Why saved decisions could not be written or read back, in words for the user."""


@dataclass(frozen=True)
class Owner:
    """Whose saved list this is: a token the user holds, or a signed-in user's e-mail."""

    secret: str
    kind: str  # "token" or "email"

    @staticmethod
    def from_token(token: str) -> Owner:
        token = token.strip()
        if not is_token(token):
            raise AutosaveError(
                f"That is not a token this app gives out: those are {TOKEN_CHARS} letters, digits, '-' or '_'."
            )
        return Owner(token, "token")

    @staticmethod
    def from_email(email: str) -> Owner:
        return Owner(email.strip().lower(), "email")

    def _material(self, purpose: str, digest: str) -> bytes:
        # Kind and purpose are part of the hash: a token can never name or sign an e-mail owner's file, and
        # the file-name hash says nothing about the MAC key.
        return f"cleaner-autosave\0{purpose}\0{self.kind}\0{self.secret}\0{digest}".encode()

    def file_name(self, digest: str) -> str:
        return hashlib.sha256(self._material("name", digest)).hexdigest()[:40] + ".csv"

    def mac_key(self, digest: str) -> bytes:
        return hashlib.sha256(self._material("mac", digest)).digest()


def new_token() -> str:
    """A fresh secret for one user (URL-safe base64, no padding)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def is_token(text: str) -> bool:
    return len(text) == TOKEN_CHARS and set(text) <= _TOKEN_ALPHABET


class AutosaveStore:
    """Saved decision lists in one folder under the cache folder."""

    def __init__(self, folder: Path, max_file_bytes: int = MAX_FILE_BYTES, max_total_bytes: int = MAX_TOTAL_BYTES):
        self.folder = Path(folder)
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes

    @classmethod
    def under(cls, cache_dir: Path) -> AutosaveStore:
        return cls(Path(cache_dir) / FOLDER_NAME)

    def path(self, owner: Owner, digest: str) -> Path:
        return self.folder / owner.file_name(digest)

    def save(self, owner: Owner, digest: str, decisions: Decisions) -> None:
        """Write the decisions atomically (a crash leaves the old list or the new one, never half of one)."""
        body = decisions.decisions_csv().encode("utf-8")
        mac = hmac.new(owner.mac_key(digest), MAGIC + body, hashlib.sha256).hexdigest().encode()
        data = MAGIC + mac + b"\n" + body
        if len(data) > self.max_file_bytes:
            raise AutosaveError(
                f"Your decisions are larger than the {self.max_file_bytes // MB} MB this server "
                "keeps per list: download them instead."
            )
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            os.chmod(self.folder, 0o700)  # only the server's own user may even look inside
            # durable: the point of the file is to outlive a crash
            write_atomically(self.folder, self.path(owner, digest).name, data, durable=True)
        except OSError as exc:
            raise AutosaveError(
                f"This server could not keep your decisions ({exc.strerror or exc}); download them to keep them."
            ) from exc
        self._evict(keep=self.path(owner, digest))

    def legacy(self, owner: Owner, digest: str) -> ParsedDecisions | None:
        """An old list not yet imported into the decision store (None when there is none), checked as `load`
        checks it: a damaged or altered one raises AutosaveError."""
        if not self.path(owner, digest).is_file():
            return None
        return self.load(owner, digest)

    def retire(self, owner: Owner, digest: str) -> None:
        """The decision store holds the list's decisions now: rename it so it is never imported again."""
        path = self.path(owner, digest)
        try:
            path.replace(path.with_name(path.name + IMPORTED_SUFFIX))
        except FileNotFoundError:
            pass  # another session of the same owner retired it a moment ago

    def load(self, owner: Owner, digest: str) -> ParsedDecisions:
        """The saved decisions, checked: a missing, oversized, damaged or altered file raises AutosaveError."""
        path = self.path(owner, digest)
        try:
            with open(path, "rb") as fh:
                data = fh.read(self.max_file_bytes + 1)
        except FileNotFoundError:
            raise AutosaveError("No decisions are saved on this server for that token and this dataset.") from None
        except OSError as exc:
            raise AutosaveError(f"The saved decisions could not be read ({exc.strerror or exc}).") from exc
        if len(data) > self.max_file_bytes:
            raise AutosaveError("The saved decisions are larger than this server allows, so they were not read.")
        head, _, rest = data.partition(MAGIC)
        mac, newline, body = rest.partition(b"\n")
        if head or not rest or not newline or len(mac) != _MAC_HEX:
            raise AutosaveError("The saved decisions are damaged, so they were not restored.")
        expected = hmac.new(owner.mac_key(digest), MAGIC + body, hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(mac, expected):
            raise AutosaveError(
                "The saved decisions were changed outside this app (or are damaged), so they were not restored."
            )
        try:
            return parse_decisions(body)
        except ValueError as exc:
            raise AutosaveError(f"The saved decisions could not be read: {exc}") from exc

    def _evict(self, keep: Path) -> None:
        """Beyond the folder's cap, drop the lists written least recently (never the one just written)."""
        try:
            evict_oldest(self.folder, "*.csv", self.max_total_bytes, keep=keep)
        except OSError:
            pass  # another session evicted or saved meanwhile: the next save looks again
