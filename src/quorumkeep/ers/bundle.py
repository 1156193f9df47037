"""Recovery bundles: one domain's parts for one epoch, and their public verification.

A bundle is a JSON object (docs/emergency-recovery.md §5):

    {"format": "quorumkeep-ers-bundle/1", "domain_id", "epoch",
     "public_key_package": {"group_public_key", "threshold", "verifying_shares": {"<id>": hex}},
     "keyset_hash", "recovery_key": {"public_key", "fingerprint"},
     "parts": [{"account", "participant_id", "digest", "part"}],
     "provenance": {...}}

``verify`` checks, with public data only: the recovery key and its fingerprint; that every
verifying share lies on one polynomial of degree t−1 whose value at 0 is the group key; the
keyset hash; every part's digest, encoding and proof against its participant's verifying
share and label; and that at least t parts verify. ``provenance`` (where ``ers collect``
found the parts on the ledger) is informational and not checked here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quorumkeep.crypto import pve
from quorumkeep.crypto.errors import CryptoError, InvalidEncoding
from quorumkeep.crypto.group import (
    ONE,
    Element,
    Scalar,
    element_decode,
    element_mul,
    element_sum,
    identifier_scalar,
    scalar_inv,
    scalar_mul,
    scalar_sub,
)
from quorumkeep.ers.errors import ErsError

BUNDLE_FORMAT = "quorumkeep-ers-bundle/1"
MAX_PARTS = 256


@dataclass(frozen=True)
class BundlePart:
    account: str
    participant_id: int
    digest: bytes
    encoded: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "participant_id": self.participant_id,
            "digest": self.digest.hex(),
            "part": self.encoded.hex(),
        }


@dataclass(frozen=True)
class Bundle:
    domain_id: int
    epoch: int
    group_public_key: Element
    threshold: int
    verifying_shares: Mapping[int, Element]
    keyset_hash: bytes
    recovery_key: pve.RecoveryPublicKey
    stated_fingerprint: bytes
    parts: tuple[BundlePart, ...]
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": BUNDLE_FORMAT,
            "domain_id": self.domain_id,
            "epoch": self.epoch,
            "public_key_package": {
                "group_public_key": self.group_public_key.hex(),
                "threshold": self.threshold,
                "verifying_shares": {
                    str(pid): share.hex() for pid, share in sorted(self.verifying_shares.items())
                },
            },
            "keyset_hash": self.keyset_hash.hex(),
            "recovery_key": {
                "public_key": self.recovery_key.spki_der.hex(),
                "fingerprint": self.stated_fingerprint.hex(),
            },
            "parts": [p.to_json() for p in self.parts],
            "provenance": self.provenance,
        }

    def computed_keyset_hash(self) -> bytes:
        return pve.package_digest(
            self.domain_id,
            self.epoch,
            self.group_public_key,
            self.threshold,
            sorted(self.verifying_shares.items()),
        )

    def label(self, account: str, participant_id: int) -> bytes:
        return pve.Label(
            self.domain_id, self.epoch, account, participant_id, self.keyset_hash
        ).encode()


# --- parsing ------------------------------------------------------------------------------


def _obj(
    value: Any, what: str, keys: set[str], optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ErsError("unreadable", f"{what} must be an object")
    present = set(value)
    if not keys <= present or not present <= keys | optional:
        raise ErsError(
            "unreadable",
            f"{what}: missing {sorted(keys - present)}, "
            f"unknown {sorted(present - keys - optional)}",
        )
    return value


def _int(value: Any, what: str, minimum: int = 0, maximum: int = 2**63 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ErsError("unreadable", f"{what} must be an integer in [{minimum}, {maximum}]")
    return value


def _hex(value: Any, what: str, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise ErsError("unreadable", f"{what} must be a hex string")
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise ErsError("unreadable", f"{what} is not hex") from None
    if size is not None and len(data) != size:
        raise ErsError("unreadable", f"{what} must be {size} bytes")
    return data


def _element(value: Any, what: str) -> Element:
    try:
        return element_decode(_hex(value, what, 32))
    except InvalidEncoding as exc:
        raise ErsError("unreadable", f"{what}: {exc}") from None


def bundle_from_json(value: Any) -> Bundle:
    obj = _obj(
        value,
        "bundle",
        {"format", "domain_id", "epoch", "public_key_package", "keyset_hash", "recovery_key"}
        | {"parts"},
        frozenset({"provenance"}),
    )
    if obj["format"] != BUNDLE_FORMAT:
        raise ErsError("unreadable", f"bundle format must be {BUNDLE_FORMAT!r}")
    package = _obj(
        obj["public_key_package"],
        "public_key_package",
        {"group_public_key", "threshold", "verifying_shares"},
    )
    shares_obj = package["verifying_shares"]
    if not isinstance(shares_obj, dict) or not 1 <= len(shares_obj) <= MAX_PARTS:
        raise ErsError("unreadable", "verifying_shares must be an object of 1 to 256 shares")
    shares: dict[int, Element] = {}
    for key, share in shares_obj.items():
        if not isinstance(key, str) or not key.isdigit() or key != str(int(key)):
            raise ErsError("unreadable", "verifying_shares keys must be decimal participant ids")
        shares[_int(int(key), "participant id", 1)] = _element(share, f"verifying_shares[{key}]")
    rkey = _obj(obj["recovery_key"], "recovery_key", {"public_key", "fingerprint"})
    try:
        recovery_key = pve.RecoveryPublicKey.from_der(_hex(rkey["public_key"], "recovery key"))
    except InvalidEncoding as exc:
        raise ErsError("unreadable", str(exc)) from None
    parts_list = obj["parts"]
    if not isinstance(parts_list, list) or len(parts_list) > MAX_PARTS:
        raise ErsError("unreadable", "parts must be a list of at most 256 parts")
    parts = []
    for i, item in enumerate(parts_list):
        p = _obj(item, f"parts[{i}]", {"account", "participant_id", "digest", "part"})
        if not isinstance(p["account"], str) or not 1 <= len(p["account"]) <= 64:
            raise ErsError("unreadable", f"parts[{i}].account must be a string")
        parts.append(
            BundlePart(
                p["account"],
                _int(p["participant_id"], f"parts[{i}].participant_id", 1),
                _hex(p["digest"], f"parts[{i}].digest", 32),
                _hex(p["part"], f"parts[{i}].part"),
            )
        )
    provenance = obj.get("provenance", {})
    if not isinstance(provenance, dict):
        raise ErsError("unreadable", "provenance must be an object")
    return Bundle(
        domain_id=_int(obj["domain_id"], "domain_id", 0, 2**32 - 1),
        epoch=_int(obj["epoch"], "epoch"),
        group_public_key=_element(package["group_public_key"], "group_public_key"),
        threshold=_int(package["threshold"], "threshold", 2, MAX_PARTS),
        verifying_shares=shares,
        keyset_hash=_hex(obj["keyset_hash"], "keyset_hash", 32),
        recovery_key=recovery_key,
        stated_fingerprint=_hex(rkey["fingerprint"], "recovery_key.fingerprint", 32),
        parts=tuple(parts),
        provenance=provenance,
    )


def read_bundle(path: Path) -> Bundle:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ErsError("unreadable", f"cannot read {path}: {exc}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ErsError("unreadable", f"{path} is not JSON: {exc.msg}") from None
    return bundle_from_json(value)


def write_bundle(path: Path, bundle: Bundle) -> None:
    path.write_text(json.dumps(bundle.to_json(), indent=1, sort_keys=True) + "\n")


# --- verification -------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]
    valid_parts: tuple[BundlePart, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def problems(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "valid_parts": [p.participant_id for p in self.valid_parts],
            "checks": [c.to_json() for c in self.checks],
        }


def lagrange_at(x_i: Scalar, xs: list[Scalar], x: Scalar) -> Scalar:
    """λ_i(x) = Π_{j≠i} (x − x_j)/(x_i − x_j): the Lagrange basis over ``xs`` at ``x``."""
    num, den = ONE, ONE
    for x_j in xs:
        if x_j == x_i:
            continue
        num = scalar_mul(num, scalar_sub(x, x_j))
        den = scalar_mul(den, scalar_sub(x_i, x_j))
    return scalar_mul(num, scalar_inv(den))


def package_problem(
    group_public_key: Element, threshold: int, shares: Mapping[int, Element]
) -> str | None:
    """Why the shares are not t-of-n Shamir shares (in the exponent) of the group key.

    The lowest t shares fix the polynomial: the group key must be its value at 0 and every
    further share its value at that id (Y_j = Σ λ_i(j)·Y_i)."""
    ids = sorted(shares)
    if len(ids) < threshold:
        return f"{len(ids)} verifying shares for threshold {threshold}"
    base = ids[:threshold]
    xs = [identifier_scalar(i) for i in base]

    def at(x: Scalar) -> Element:
        return element_sum(
            element_mul(shares[i], lagrange_at(x_i, xs, x)) for i, x_i in zip(base, xs, strict=True)
        )

    if at(bytes(32)) != group_public_key:
        return f"the verifying shares of ids {base} do not interpolate to the group public key"
    for j in ids[threshold:]:
        if at(identifier_scalar(j)) != shares[j]:
            return f"verifying share {j} is not on the polynomial of the others"
    return None


def verify(bundle: Bundle) -> Report:
    """Every public check of the bundle (see the module docstring)."""
    checks: list[Check] = []
    fp_ok = bundle.recovery_key.fingerprint == bundle.stated_fingerprint
    checks.append(
        Check(
            "recovery_key",
            fp_ok,
            f"RSA-{bundle.recovery_key.bits}, fingerprint {bundle.recovery_key.fingerprint.hex()}"
            if fp_ok
            else "the stated fingerprint is not the SHA-256 of the key",
        )
    )
    problem = package_problem(bundle.group_public_key, bundle.threshold, bundle.verifying_shares)
    checks.append(
        Check(
            "public_key_package",
            problem is None,
            problem
            or f"{len(bundle.verifying_shares)} verifying shares, threshold {bundle.threshold}, "
            f"interpolate to {bundle.group_public_key.hex()}",
        )
    )
    hash_ok = bundle.computed_keyset_hash() == bundle.keyset_hash
    checks.append(
        Check(
            "keyset_hash",
            hash_ok,
            "matches the public key package"
            if hash_ok
            else "is not the digest of this public key package",
        )
    )
    valid: list[BundlePart] = []
    seen: set[int] = set()
    for part in bundle.parts:
        name = f"part {part.participant_id} ({part.account})"
        detail = _part_problem(bundle, part, seen)
        seen.add(part.participant_id)
        checks.append(Check(name, detail is None, detail or "proof verifies"))
        if detail is None:
            valid.append(part)
    enough = len(valid) >= bundle.threshold
    checks.append(
        Check(
            "threshold",
            enough,
            f"{len(valid)} verified parts, {bundle.threshold} needed",
        )
    )
    return Report(tuple(checks), tuple(valid))


def _part_problem(bundle: Bundle, part: BundlePart, seen: set[int]) -> str | None:
    if part.participant_id in seen:
        return "a second part for this participant"
    share = bundle.verifying_shares.get(part.participant_id)
    if share is None:
        return "the participant has no verifying share in the package"
    if pve.part_digest(part.encoded) != part.digest:
        return "the digest is not the SHA-256 of the part"
    try:
        decoded = pve.Part.decode(part.encoded)
        pve.verify(
            bundle.recovery_key, decoded, share, bundle.label(part.account, part.participant_id)
        )
    except CryptoError as exc:
        return str(exc)
    return None
