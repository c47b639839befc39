"""Ed25519 keys, the canonical serialisation of events, signing, verifying and chaining.

The canonical form is JSON with sorted keys, no insignificant whitespace, UTF-8, and
timestamps as ISO-8601 UTC with microseconds. Every value in it survives a round trip through
PostgreSQL (float8, jsonb, timestamptz), so a row read back verifies bit for bit; any change
to any signed column does not.

Events form a hash chain: each one signs `prev_hash`, the SHA-256 of the previous event's
canonical form and signature (`event_hash`), so deleting, reordering or replaying a row breaks
the chain even though every remaining signature is valid. Events from before the chain existed
have no `prev_hash` and sign exactly what they signed then.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ruvectord.errors import UserError

SIGNED_FIELDS = (
    "collection",
    "event_type",
    "previous_state",
    "new_state",
    "lambda_cut",
    "lambda2",
    "witness_edges",
    "metadata",
    "signer_id",
    "created_at",
    "prev_hash",  # left out of the canonical form when absent (events older than the chain)
)


def _normalise(value: Any) -> Any:
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime in a signed event")
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"non-finite number {value} in a signed event")
        # 1.0 and 1 must serialise alike: jsonb gives back whichever it likes
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    return value


def canonical(event: Mapping[str, Any]) -> bytes:
    """The exact bytes that are signed: the signed fields of `event`, canonically encoded."""
    payload = {key: _normalise(event.get(key)) for key in SIGNED_FIELDS}
    if payload["prev_hash"] is None:
        del payload["prev_hash"]
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def event_hash(event: Mapping[str, Any], signature: bytes) -> bytes:
    """The link the next event signs: SHA-256 over this event's canonical form and signature."""
    return hashlib.sha256(canonical(event) + bytes(signature)).digest()


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Signer:
    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def id(self) -> str:
        return key_id(self.public)

    @property
    def public_bytes(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def sign(self, event: Mapping[str, Any]) -> bytes:
        if event.get("signer_id") != self.id:
            raise ValueError("event signer_id does not match this key")
        return self.private.sign(canonical(event))


def verify(public_key: bytes, event: Mapping[str, Any], signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, canonical(event))
    except (InvalidSignature, ValueError):
        return False
    return True


def public_key_from_hex(text: str) -> bytes:
    """A pinned public key as configured: 64 hex digits (the raw 32-byte Ed25519 key)."""
    raw = bytes.fromhex(text.strip())
    if len(raw) != 32:
        raise ValueError(f"{text!r} is not 32 bytes")
    Ed25519PublicKey.from_public_bytes(raw)
    return raw


def pinned_keys(key_file: Path | None, configured: tuple[str, ...]) -> dict[str, bytes]:
    """Signer id -> public key for every key an operator trusts: the configured list, and
    the daemon's own key file when it is readable here. Blocking file I/O."""
    keys = {}
    for text in configured:
        raw = public_key_from_hex(text)
        keys[key_id(Ed25519PublicKey.from_public_bytes(raw))] = raw
    if key_file is not None:
        key = read_key(key_file)
        if key is not None:
            signer = Signer(key)
            keys[signer.id] = signer.public_bytes
    return keys


def load_or_create_key(path: Path) -> tuple[Signer, bool]:
    """Read the PEM private key at `path`, creating it (mode 0600) if missing.

    Returns the signer and whether the key was created now. A new key is written whole or not
    at all (temp file, fsync, link into place, fsync the directory), so an interrupted start
    never leaves an empty key behind, and when two daemons start at once the first key to
    land wins and both use it. Blocking file I/O: call it through a worker thread.
    """
    key = read_key(path)
    if key is None:
        return _create_key(path)
    return Signer(key), False


def read_key(path: Path) -> Ed25519PrivateKey | None:
    """The key at `path`, None if there is none yet; `UserError` if it cannot be used."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UserError(f"signing key {path}: cannot read: {exc.strerror}") from None
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise UserError(
            f"signing key {path}: mode {mode:04o} lets others read it; chmod 600 {path}"
        )
    return _parse_key(path, data)


def _parse_key(path: Path, data: bytes) -> Ed25519PrivateKey:
    what_to_do = (
        f"restore it from a backup, or move it aside (mv {path} {path}.broken) to let "
        "ruvectord create a new key on the next start (events signed by the old key stay "
        "verifiable: its public key is in ruvector.signing_keys)"
    )
    if not data.strip():
        raise UserError(
            f"signing key {path}: the file is empty (a key write was interrupted?); " + what_to_do
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise UserError(
            f"signing key {path}: not a PEM private key ({exc}); " + what_to_do
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(
            f"signing key {path}: a {type(key).__name__}, not an Ed25519 key; " + what_to_do
        )
    return key


_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}


def _create_key(path: Path) -> tuple[Signer, bool]:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # mkstemp: mode 0600, in the same directory so that the link below cannot cross
        # file systems
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UserError(f"signing key {path}: cannot create: {exc.strerror}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            # link, unlike rename, never replaces: a key another daemon put there first wins
            os.link(tmp, path)
        except FileExistsError:
            return load_or_create_key(path)[0], False
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            # a file system without hard links: rename, after a check that leaves a narrow race
            if path.exists():
                return load_or_create_key(path)[0], False
            os.rename(tmp, path)
        _fsync_directory(path.parent)
    except OSError as exc:
        raise UserError(f"signing key {path}: cannot create: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return Signer(key), True


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
