"""The signing key on disk: written whole or not at all, one key when daemons race, and a key
file that cannot be used is refused with what to do about it."""

from __future__ import annotations

import json
import os
import resource
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ruvectord.audit import load_or_create_key
from ruvectord.errors import UserError

ROOT = Path(__file__).parents[2]

# Loads or creates the key in a separate process and prints what happened as JSON.
_CHILD = """
import json, sys
from pathlib import Path
from ruvectord.audit import load_or_create_key
from ruvectord.errors import UserError
try:
    signer, created = load_or_create_key(Path(sys.argv[1]))
except UserError as exc:
    print(json.dumps({"error": str(exc)}))
else:
    print(json.dumps({"id": signer.id, "created": created}))
"""


def _no_file_growth() -> None:
    # what a full disk does to the write: any byte past 0 fails (EFBIG; Python ignores SIGXFSZ)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def _child(path: Path, *, full_disk: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_no_file_growth if full_disk else None,
    )


def _result(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    result: dict[str, object] = json.loads(out)
    return result


def test_a_failed_write_leaves_no_key_behind_and_the_next_start_creates_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "signing.key"
    failed = _result(_child(path, full_disk=True))
    assert str(failed["error"]).startswith(f"signing key {path}: cannot create:")
    assert not path.exists()  # not a 0-byte key that every later start would trip over
    assert [p.name for p in path.parent.iterdir()] == []  # and no temp file either
    signer, created = load_or_create_key(path)
    assert created and path.stat().st_size > 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created = load_or_create_key(path)
    assert again.id == signer.id and not created


def test_daemons_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    results = [_result(p) for p in [_child(path) for _ in range(8)]]
    assert len({r["id"] for r in results}) == 1, results
    assert sum(bool(r["created"]) for r in results) == 1, results
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signing.key"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "the file is empty"),
        (b"\n", "the file is empty"),
        (
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "not a PEM private key",
        ),
    ],
    ids=["empty", "blank", "truncated"],
)
def test_an_unusable_key_file_says_what_to_do(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "signing.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(UserError) as exc:
        load_or_create_key(path)
    message = str(exc.value)
    assert message.startswith(f"signing key {path}: {problem}")
    assert f"mv {path} {path}.broken" in message and "restore it from a backup" in message
    assert "\n" not in message
    assert path.read_bytes() == content  # never overwritten: it may be the only copy


def test_a_key_of_another_kind_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "signing.key"
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    os.chmod(path, 0o600)
    with pytest.raises(UserError, match=r"not an Ed25519 key; restore it from a backup"):
        load_or_create_key(path)
