"""The offline recovery key: RSA-3072 (default), OAEP with SHA-256, standard PEM files.

``ers-private.pem`` is PKCS#8 PEM encrypted under the passphrase (OpenSSL's
``BestAvailableEncryption``: readable by ``openssl pkey``, importable into an HSM, printable
on paper); ``ers-public.pem`` is the SubjectPublicKeyInfo PEM; the fingerprint is the
SHA-256 of the SubjectPublicKeyInfo DER, in hex.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from quorumkeep.crypto.errors import InvalidEncoding
from quorumkeep.crypto.pve import PUBLIC_EXPONENT, RecoveryPublicKey
from quorumkeep.ers.errors import ErsError

DEFAULT_BITS = 3072
PRIVATE_FILE = "ers-private.pem"
PUBLIC_FILE = "ers-public.pem"
INFO_FILE = "ers-public.json"


@dataclass(frozen=True)
class GeneratedKey:
    private_path: Path
    public_path: Path
    info_path: Path
    public: RecoveryPublicKey


def public_info(public: RecoveryPublicKey) -> dict[str, Any]:
    """What an operator votes: the SPKI DER (hex) and its fingerprint."""
    return {
        "public_key": public.spki_der.hex(),
        "fingerprint": public.fingerprint.hex(),
        "bits": public.bits,
        "oaep_hash": "SHA-256",
    }


def generate(out: Path, passphrase: bytes, bits: int = DEFAULT_BITS) -> GeneratedKey:
    """Write a new key pair into ``out`` (created; refuses to overwrite)."""
    if bits not in (2048, 3072, 4096):
        raise ErsError("unreadable", "key size must be 2048, 3072 or 4096 bits")
    if not passphrase:
        raise ErsError("passphrase_unavailable", "the passphrase is empty")
    out.mkdir(parents=True, exist_ok=True)
    private_path, public_path, info_path = out / PRIVATE_FILE, out / PUBLIC_FILE, out / INFO_FILE
    for path in (private_path, public_path, info_path):
        if path.exists():
            raise ErsError("exists", f"{path} exists; refusing to overwrite a recovery key")
    key = rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = RecoveryPublicKey.from_private(key)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    info_path.write_text(json.dumps(public_info(public), indent=2) + "\n")
    return GeneratedKey(private_path, public_path, info_path, public)


def load_private(path: Path, passphrase: bytes | None) -> rsa.RSAPrivateKey:
    """A PEM private key (encrypted PKCS#8, or unencrypted if ``passphrase`` is None)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ErsError("unreadable", f"cannot read {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        raise ErsError(
            "passphrase_unavailable",
            f"{path} is encrypted and no passphrase was given"
            if passphrase is None
            else f"{path} is not encrypted; do not give a passphrase",
        ) from None
    except ValueError:
        raise ErsError(
            "unreadable", f"{path}: not a PEM private key, or wrong passphrase"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ErsError("unreadable", f"{path} is not an RSA private key")
    return key


def load_public(path: Path) -> RecoveryPublicKey:
    """A public key from SPKI PEM (``ers-public.pem``) or the JSON info file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ErsError("unreadable", f"cannot read {path}: {exc.strerror}") from None
    try:
        if data.lstrip().startswith(b"{"):
            der = bytes.fromhex(json.loads(data)["public_key"])
        else:
            der = serialization.load_pem_public_key(data).public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        return RecoveryPublicKey.from_der(der)
    except (ValueError, KeyError, TypeError, InvalidEncoding, UnsupportedAlgorithm) as exc:
        raise ErsError("unreadable", f"{path}: not a recovery public key ({exc})") from None
