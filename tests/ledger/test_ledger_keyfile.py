"""Sealed key files: format, permissions, no plaintext, refusal of edits and overwrites."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import nacl.signing
import pytest
from ledger_helpers import FAST_COST

from quorumkeep.crypto.seal import PassphraseParams
from quorumkeep.ledger.keyfile import (
    KEY_FORMAT,
    PASSPHRASE_ENV,
    KeyFileError,
    load_signer,
    open_key,
    read_key_file,
    read_passphrase,
    seal_key,
    write_key_file,
)

PASS = b"key file passphrase"


def _params() -> PassphraseParams:
    import os

    return PassphraseParams.new(os.urandom, *FAST_COST)


def _write(path: Path, account: str | None = "alice") -> nacl.signing.SigningKey:
    key = nacl.signing.SigningKey.generate()
    write_key_file(path, seal_key(key, PASS, account=account, params=_params()))
    return key


def test_round_trip_and_format(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    key = _write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    body = json.loads(path.read_text())
    assert set(body) == {"format", "account", "public_key", "sealed_secret_key"}
    assert body["format"] == KEY_FORMAT
    assert body["public_key"] == bytes(key.verify_key).hex()
    raw = path.read_bytes()
    assert bytes(key) not in raw and bytes(key).hex().encode() not in raw
    signer = load_signer(path, PASS)
    assert signer.account == "alice" and signer.public_key == bytes(key.verify_key)
    assert [p.name for p in tmp_path.iterdir()] == ["k.json"]  # no temp file left


def test_wrong_passphrase(tmp_path: Path) -> None:
    _write(tmp_path / "k.json")
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_signer(tmp_path / "k.json", b"not it")


@pytest.mark.parametrize("field", ["account", "public_key"])
def test_edited_metadata_is_refused(tmp_path: Path, field: str) -> None:
    path = tmp_path / "k.json"
    _write(path)
    body = json.loads(path.read_text())
    body[field] = (
        "mallory"
        if field == "account"
        else bytes(nacl.signing.SigningKey.generate().verify_key).hex()
    )
    path.write_text(json.dumps(body))
    with pytest.raises(KeyFileError):
        open_key(read_key_file(path), PASS)


def test_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    _write(path)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        _write(path)
    assert path.read_bytes() == before


def test_not_a_key_file(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    path.write_text('{"format": "something-else"}')
    with pytest.raises(KeyFileError, match="not a quorumkeep-key-v1"):
        read_key_file(path)


def test_account_mismatch_and_missing_account(tmp_path: Path) -> None:
    _write(tmp_path / "a.json", "alice")
    with pytest.raises(KeyFileError, match="not 'bob'"):
        load_signer(tmp_path / "a.json", PASS, "bob")
    _write(tmp_path / "n.json", None)
    with pytest.raises(KeyFileError, match="names no account"):
        load_signer(tmp_path / "n.json", PASS)
    assert load_signer(tmp_path / "n.json", PASS, "bob").account == "bob"


def test_passphrase_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    with pytest.raises(KeyFileError, match=PASSPHRASE_ENV):
        read_passphrase(None)
    monkeypatch.setenv(PASSPHRASE_ENV, "from env")
    assert read_passphrase(None) == b"from env"
    file = tmp_path / "pass"
    file.write_bytes(b"from file\n")
    assert read_passphrase(file) == b"from file"
    file.write_bytes(b"\n")
    with pytest.raises(KeyFileError, match="empty"):
        read_passphrase(file)
    with pytest.raises(KeyFileError, match="cannot read"):
        read_passphrase(tmp_path / "missing")
