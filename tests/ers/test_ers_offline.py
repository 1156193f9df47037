"""The offline recovery tools: bundle verification, recovery from any t parts, refusals,
scalar signing checked by independent RFC 8032 verifiers, the recovered-key file, and that
the package imports no node or ledger code."""

from __future__ import annotations

import ast
import itertools
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from ers_helpers import load_test_key, make_bundle
from nacl.signing import VerifyKey

from quorumkeep.crypto import pve
from quorumkeep.crypto.derive import derive_public_key
from quorumkeep.crypto.group import Scalar, base_mul, scalar_from_int
from quorumkeep.crypto.scalar_sign import sign_with_scalar
from quorumkeep.ers import keys
from quorumkeep.ers.bundle import Bundle, bundle_from_json, read_bundle, verify, write_bundle
from quorumkeep.ers.errors import ErsError
from quorumkeep.ers.recover import read_recovered, recover, write_recovered

PRIVATE = load_test_key()
Made = tuple[Bundle, Scalar, dict[int, Scalar]]


@pytest.fixture(scope="module")
def made() -> Made:
    return make_bundle(PRIVATE, threshold=2, ids=(1, 2, 3), epoch=4)


def test_bundle_verifies_and_round_trips(made: Made, tmp_path: Path) -> None:
    bundle, _, _ = made
    report = verify(bundle)
    assert report.ok, report.problems()
    assert [p.participant_id for p in report.valid_parts] == [1, 2, 3]
    write_bundle(tmp_path / "b.json", bundle)
    assert read_bundle(tmp_path / "b.json") == bundle


def test_recover_from_any_t_parts(made: Made) -> None:
    bundle, secret, _ = made
    for subset in itertools.combinations(bundle.parts, 2):
        key = recover(replace(bundle, parts=subset), PRIVATE)
        assert key.secret == secret
        assert key.public_key == bundle.group_public_key == base_mul(secret)


def test_fewer_than_t_parts_refused(made: Made) -> None:
    bundle, _, _ = made
    with pytest.raises(ErsError) as exc:
        recover(replace(bundle, parts=bundle.parts[:1]), PRIVATE)
    assert exc.value.code == "not_enough_parts"
    assert not verify(replace(bundle, parts=bundle.parts[:1])).ok


def test_other_epoch_refused(made: Made) -> None:
    bundle, _, _ = made
    with pytest.raises(ErsError) as exc:
        recover(bundle, PRIVATE, expect_epoch=5)
    assert exc.value.code == "wrong_epoch"
    with pytest.raises(ErsError) as exc:
        recover(bundle, PRIVATE, expect_domain=1)
    assert exc.value.code == "wrong_domain"
    # Relabelling the bundle's epoch: every part's label names epoch 4, so none verifies.
    relabelled = replace(bundle, epoch=5)
    relabelled = replace(relabelled, keyset_hash=relabelled.computed_keyset_hash())
    report = verify(relabelled)
    assert not report.ok and not report.valid_parts
    with pytest.raises(ErsError) as exc:
        recover(relabelled, PRIVATE)
    assert exc.value.code == "not_enough_parts"


def test_part_of_another_epoch_in_bundle_refused(made: Made) -> None:
    """Parts for the same shares made for epoch 3 do not pass in an epoch-4 bundle."""
    bundle, _, shares = made
    key = pve.RecoveryPublicKey.from_private(PRIVATE)
    label = pve.Label(0, 3, "op1", 1, bundle.keyset_hash).encode()
    encoded = pve.encrypt(key, shares[1], label, os.urandom).encode()
    stale = replace(bundle.parts[0], encoded=encoded, digest=pve.part_digest(encoded))
    report = verify(replace(bundle, parts=(stale, *bundle.parts[1:])))
    assert not report.ok
    assert "another label" in report.problems()[0]


def test_wrong_share_part_refused(made: Made) -> None:
    """A participant encrypting something other than its share is caught by verify."""
    bundle, _, _ = made
    key = pve.RecoveryPublicKey.from_private(PRIVATE)
    label = bundle.label("op2", 2)
    encoded = pve.encrypt(key, scalar_from_int(42), label, os.urandom).encode()
    bad = replace(bundle.parts[1], encoded=encoded, digest=pve.part_digest(encoded))
    report = verify(replace(bundle, parts=(bundle.parts[0], bad, bundle.parts[2])))
    assert not report.ok
    assert [p.participant_id for p in report.valid_parts] == [1, 3]
    # recovery still refuses a bundle that does not verify, even with t good parts
    with pytest.raises(ErsError) as exc:
        recover(replace(bundle, parts=(bundle.parts[0], bad, bundle.parts[2])), PRIVATE)
    assert exc.value.code == "bundle_invalid"


def test_tampered_digest_package_and_fingerprint_refused(made: Made) -> None:
    bundle, _, _ = made
    bad_digest = replace(bundle.parts[0], digest=bytes(32))
    assert "digest" in verify(replace(bundle, parts=(bad_digest, *bundle.parts[1:]))).problems()[0]
    shares = dict(bundle.verifying_shares)
    shares[3] = base_mul(scalar_from_int(7))
    problems = verify(replace(bundle, verifying_shares=shares)).problems()
    assert any("not on the polynomial" in p for p in problems)
    assert any("keyset_hash" in p for p in problems)
    assert not verify(replace(bundle, stated_fingerprint=bytes(32))).ok
    assert not verify(replace(bundle, group_public_key=base_mul(scalar_from_int(3)))).ok
    dup = replace(bundle, parts=(bundle.parts[0], bundle.parts[0], bundle.parts[1]))
    assert "second part" in verify(dup).problems()[0]


def test_wrong_private_key_refused(made: Made) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    bundle, _, _ = made
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ErsError) as exc:
        recover(bundle, other)
    assert exc.value.code == "wrong_key"


def test_derived_key_and_signature(made: Made) -> None:
    """The (account, path) key equals the contract's derived public key, and its
    signatures verify under two independent RFC 8032 verifiers."""
    bundle, _, _ = made
    key = recover(bundle, PRIVATE, account="user", path="wallet/0")
    assert key.public_key == derive_public_key(bundle.group_public_key, "user", "wallet/0")
    message = b"recovered after the company was gone"
    signature = key.sign(message)
    VerifyKey(key.public_key).verify(message, signature)
    Ed25519PublicKey.from_public_bytes(key.public_key).verify(signature, message)
    assert "secret" not in repr(key) and key.secret.hex() not in repr(key)


def test_scalar_signing_is_deterministic_and_rfc8032() -> None:
    secret = scalar_from_int(123456789)
    sig1, public = sign_with_scalar(secret, b"m")
    sig2, _ = sign_with_scalar(secret, b"m")
    assert sig1 == sig2 and public == base_mul(secret)
    VerifyKey(public).verify(b"m", sig1)
    with pytest.raises(ValueError):
        sign_with_scalar(bytes(32), b"m")


def test_recovered_file_sealed_and_plaintext(made: Made, tmp_path: Path) -> None:
    bundle, secret, _ = made
    key = recover(bundle, PRIVATE)
    write_recovered(tmp_path / "sealed.json", key, b"pass")
    text = (tmp_path / "sealed.json").read_text()
    assert secret.hex() not in text
    assert oct((tmp_path / "sealed.json").stat().st_mode & 0o777) == "0o600"
    assert read_recovered(tmp_path / "sealed.json", b"pass").secret == secret
    with pytest.raises(ErsError):
        read_recovered(tmp_path / "sealed.json", b"wrong")
    with pytest.raises(ErsError) as exc:
        write_recovered(tmp_path / "sealed.json", key, b"pass")
    assert exc.value.code == "exists"
    write_recovered(tmp_path / "plain.json", key, None)
    data = json.loads((tmp_path / "plain.json").read_text())
    assert data["secret_scalar"] == secret.hex()
    assert read_recovered(tmp_path / "plain.json", None).secret == secret


def test_keygen_files(tmp_path: Path) -> None:
    made = keys.generate(tmp_path / "k", b"pass", bits=2048)
    assert oct(made.private_path.stat().st_mode & 0o777) == "0o600"
    assert b"ENCRYPTED PRIVATE KEY" in made.private_path.read_bytes()
    private = keys.load_private(made.private_path, b"pass")
    assert pve.RecoveryPublicKey.from_private(private) == made.public
    assert keys.load_public(made.public_path) == made.public
    assert keys.load_public(made.info_path) == made.public
    info = json.loads(made.info_path.read_text())
    assert info["fingerprint"] == made.public.fingerprint.hex()
    with pytest.raises(ErsError) as exc:
        keys.load_private(made.private_path, b"wrong")
    assert exc.value.code == "unreadable"
    with pytest.raises(ErsError) as exc:
        keys.generate(tmp_path / "k", b"pass", bits=2048)
    assert exc.value.code == "exists"


def test_bundle_parser_rejects_malformed(made: Made) -> None:
    bundle, _, _ = made
    good = bundle.to_json()
    for mutate in (
        lambda d: d.pop("parts"),
        lambda d: d.update(format="other"),
        lambda d: d.update(epoch=-1),
        lambda d: d["public_key_package"].update(threshold=1),
        lambda d: d["public_key_package"]["verifying_shares"].update({"01": "00" * 32}),
        lambda d: d["recovery_key"].update(public_key="3000"),
        lambda d: d["parts"][0].update(part="zz"),
        lambda d: d.update(extra=1),
    ):
        data = json.loads(json.dumps(good))
        mutate(data)
        with pytest.raises(ErsError) as exc:
            bundle_from_json(data)
        assert exc.value.code == "unreadable"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_ers_package_imports_no_node_or_ledger_code() -> None:
    """Transitively: quorumkeep.ers and every quorumkeep module it reaches."""
    src = Path(__file__).parents[2] / "src"
    todo = [p for p in (src / "quorumkeep" / "ers").glob("*.py")]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            if not name.startswith("quorumkeep"):
                continue
            assert not name.startswith(("quorumkeep.node", "quorumkeep.ledger")), (path, name)
            module = src / Path(*name.split("."))
            for candidate in (module.with_suffix(".py"), module / "__init__.py"):
                if candidate.exists():
                    todo.append(candidate)
    assert any(p.name == "recover.py" for p in seen)
