"""Rebuild a domain's group secret from a verified bundle and the offline private key.

    1. the bundle must verify (``bundle.verify``) and be the one asked for (domain, epoch);
    2. each verified part is decrypted (``pve.decrypt``: standard RSA-OAEP, then x_i·G = Y_i);
    3. the lowest t decrypted shares are interpolated at 0: x = Σ λ_i·x_i;
    4. x·G must equal the group public key;
    5. optionally the key of (account, path): x' = x + ε (docs/key-derivation.md).

The result is written as JSON (docs/emergency-recovery.md §7) with the scalar sealed under a
passphrase (crypto.seal's passphrase blob), or in plaintext only when asked for explicitly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from quorumkeep.crypto import pve
from quorumkeep.crypto.derive import derivation_tweak
from quorumkeep.crypto.errors import CryptoError
from quorumkeep.crypto.group import (
    Element,
    RandomBytes,
    Scalar,
    base_mul,
    interpolate_at_zero,
    scalar_add,
    scalar_decode,
)
from quorumkeep.crypto.scalar_sign import sign_with_scalar
from quorumkeep.crypto.seal import open_with_passphrase, seal_with_passphrase
from quorumkeep.ers.bundle import Bundle, verify
from quorumkeep.ers.errors import ErsError

RECOVERED_FORMAT = "quorumkeep-ers-recovered-key/1"
SEAL_AD = b"quorumkeep-ers-recovered-key-v1"


@dataclass(frozen=True)
class RecoveredKey:
    """A recovered (possibly derived) Ed25519 secret scalar. ``secret`` never prints."""

    domain_id: int
    epoch: int
    account: str | None
    path: str | None
    group_public_key: Element
    public_key: Element
    secret: Scalar = field(repr=False)

    def __repr__(self) -> str:
        return (
            f"RecoveredKey(domain_id={self.domain_id}, epoch={self.epoch}, "
            f"account={self.account!r}, path={self.path!r}, public_key={self.public_key.hex()})"
        )

    def sign(self, message: bytes) -> bytes:
        signature, public = sign_with_scalar(self.secret, message)
        assert public == self.public_key
        return signature

    def public_json(self) -> dict[str, Any]:
        return {
            "format": RECOVERED_FORMAT,
            "domain_id": self.domain_id,
            "epoch": self.epoch,
            "account": self.account,
            "path": self.path,
            "group_public_key": self.group_public_key.hex(),
            "public_key": self.public_key.hex(),
        }


def recover(
    bundle: Bundle,
    private_key: rsa.RSAPrivateKey,
    *,
    account: str | None = None,
    path: str | None = None,
    expect_domain: int | None = None,
    expect_epoch: int | None = None,
) -> RecoveredKey:
    """The group secret (or the (account, path) key) from ``bundle``; ErsError if refused."""
    if (account is None) != (path is None):
        raise ErsError("unreadable", "give both --account and --path, or neither")
    if expect_domain is not None and bundle.domain_id != expect_domain:
        raise ErsError(
            "wrong_domain", f"the bundle is for domain {bundle.domain_id}, not {expect_domain}"
        )
    if expect_epoch is not None and bundle.epoch != expect_epoch:
        raise ErsError(
            "wrong_epoch", f"the bundle is for epoch {bundle.epoch}, not epoch {expect_epoch}"
        )
    if pve.RecoveryPublicKey.from_private(private_key).fingerprint != bundle.stated_fingerprint:
        raise ErsError("wrong_key", "the private key is not the bundle's recovery key")
    report = verify(bundle)
    if len(report.valid_parts) < bundle.threshold:
        raise ErsError(
            "not_enough_parts",
            f"{len(report.valid_parts)} verified parts, {bundle.threshold} needed "
            f"(epoch {bundle.epoch}, domain {bundle.domain_id})",
        )
    if not report.ok:
        raise ErsError("bundle_invalid", "; ".join(report.problems()))
    shares: dict[int, Scalar] = {}
    for part in report.valid_parts:
        if len(shares) == bundle.threshold:
            break
        try:
            shares[part.participant_id] = pve.decrypt(
                private_key,
                pve.Part.decode(part.encoded),
                bundle.label(part.account, part.participant_id),
            )
        except CryptoError:
            continue
    if len(shares) < bundle.threshold:
        raise ErsError(
            "decryption_failed",
            f"only {len(shares)} parts decrypted, {bundle.threshold} needed",
        )
    secret = interpolate_at_zero(shares)
    if base_mul(secret) != bundle.group_public_key:
        raise ErsError("group_key_mismatch", "the rebuilt secret is not the group key's")
    public = bundle.group_public_key
    if account is not None and path is not None:
        secret = scalar_add(secret, derivation_tweak(account, path))
        public = base_mul(secret)
    return RecoveredKey(
        bundle.domain_id, bundle.epoch, account, path, bundle.group_public_key, public, secret
    )


def write_recovered(
    out: Path,
    key: RecoveredKey,
    passphrase: bytes | None,
    random_bytes: RandomBytes = os.urandom,
) -> None:
    """Write ``out`` (0600, never overwritten): sealed under ``passphrase``, or plaintext
    when ``passphrase`` is None (the caller asked for it explicitly)."""
    data = key.public_json()
    if passphrase is None:
        data["secret_scalar"] = key.secret.hex()
    else:
        data["sealed_secret_scalar"] = seal_with_passphrase(
            passphrase,
            key.secret,
            associated_data=SEAL_AD + key.public_key,
            random_bytes=random_bytes,
        ).hex()
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ErsError("exists", f"{out} exists; refusing to overwrite") from None
    except OSError as exc:
        raise ErsError("unreadable", f"cannot create {out}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data, indent=2) + "\n")


def read_recovered(path: Path, passphrase: bytes | None) -> RecoveredKey:
    """Read a file written by :func:`write_recovered` (checks scalar against public key)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["format"] != RECOVERED_FORMAT:
            raise ValueError("unknown format")
        public = bytes.fromhex(data["public_key"])
        if "secret_scalar" in data:
            secret = bytes.fromhex(data["secret_scalar"])
        else:
            if passphrase is None:
                raise ErsError("passphrase_unavailable", f"{path} is sealed: give the passphrase")
            secret = open_with_passphrase(
                passphrase,
                bytes.fromhex(data["sealed_secret_scalar"]),
                associated_data=SEAL_AD + public,
            )
        secret = scalar_decode(secret)
        key = RecoveredKey(
            int(data["domain_id"]),
            int(data["epoch"]),
            data["account"],
            data["path"],
            bytes.fromhex(data["group_public_key"]),
            public,
            secret,
        )
    except ErsError:
        raise
    except (OSError, ValueError, KeyError, TypeError, CryptoError) as exc:
        raise ErsError("unreadable", f"{path}: not a readable recovered key ({exc})") from None
    if base_mul(key.secret) != key.public_key:
        raise ErsError("unreadable", f"{path}: the scalar does not match the public key")
    return key
