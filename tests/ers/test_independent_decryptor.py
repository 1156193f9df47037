"""docs/emergency-recovery.md §9 is enough to decrypt: a decryptor written from the document
alone (hashlib, `cryptography`'s standard RSA-OAEP, libsodium's group operations; nothing
from quorumkeep.crypto.pve) rebuilds the group key from a bundle's JSON."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from ers_helpers import load_test_key, make_bundle
from nacl import bindings

L = 2**252 + 27742317777372353535851937790883648493


def u(n: int, size: int) -> bytes:
    return n.to_bytes(size, "big")


def base_mul(x: int) -> bytes:
    return bytes(bindings.crypto_scalarmult_ed25519_base_noclamp(x.to_bytes(32, "little")))


def decrypt_share(private, bundle: dict, part_json: dict) -> int:  # type: ignore[no-untyped-def]
    data = bytes.fromhex(part_json["part"])
    assert data[0] == 1 and int.from_bytes(data[1:3], "big") == 128
    k = int.from_bytes(data[3:5], "big")
    point = data[37:69]
    label_len = int.from_bytes(data[69:71], "big")
    label = data[71 : 71 + label_len]
    pos = 71 + label_len
    challenge = data[pos : pos + 16]
    pos += 16
    # §3: the label rebuilt from the bundle must be the one in the part
    package = bundle["public_key_package"]
    account = part_json["account"].encode()
    expected = (
        b"quorumkeep-ers-label-v1"
        + u(bundle["domain_id"], 4)
        + u(bundle["epoch"], 8)
        + u(len(account), 2)
        + account
        + u(part_json["participant_id"], 8)
        + bytes.fromhex(bundle["keyset_hash"])
    )
    assert label == expected
    assert point == bytes.fromhex(package["verifying_shares"][str(part_json["participant_id"])])
    oaep_label = b"quorumkeep-ers-oaep-v1" + label + point
    oaep = padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=oaep_label
    )
    for i in range(128):
        bit = (challenge[i // 8] >> (i % 8)) & 1
        r = data[pos : pos + 16]
        c = data[pos + 16 : pos + 16 + k]
        pos += 16 + k
        if bit:
            opened = int.from_bytes(data[pos : pos + 32], "little")
            pos += 32
        else:
            opened = int.from_bytes(hashlib.sha512(b"quorumkeep-ers-x0-v1" + r).digest(), "little")
            opened %= L
        try:
            m = int.from_bytes(private.decrypt(c, oaep), "little")
        except ValueError:
            continue
        x = (opened + m) % L
        if base_mul(x) == point:
            return x
    raise AssertionError("no row decrypted")


def test_decryptor_from_the_document_alone() -> None:
    private = load_test_key()
    bundle_obj, secret, _ = make_bundle(private, threshold=2, ids=(1, 2, 3), epoch=2)
    bundle = bundle_obj.to_json()
    shares = {p["participant_id"]: decrypt_share(private, bundle, p) for p in bundle["parts"][1:]}
    ids = sorted(shares)
    x = 0
    for i in ids:
        lam = 1
        for j in ids:
            if j != i:
                lam = lam * j * pow(j - i, -1, L) % L
        x = (x + lam * shares[i]) % L
    assert x.to_bytes(32, "little") == secret
    assert base_mul(x).hex() == bundle["public_key_package"]["group_public_key"]
