"""The backup protocol's bytes, pinned (docs/backup-protocol.md §3, §6, §7).

Every message is built from fixed keys, a fixed clock and fixed "random" bytes, so its signed
statement, its JSON (values and key order: a node answers with the dict as it is, so the order
is on the wire) and the refusals of malformed copies are exact literals. The literals were
taken from the v1 implementation; a change to any of them is a change of the wire format,
which v1 peers would refuse, not a refactoring.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.seal import KxKeyPair
from quorumkeep.wire.backup import (
    MAX_BODY_BYTES,
    BackupProtocolError,
    BackupResponse,
    DomainKey,
    Ed25519Signer,
    Hello,
    Keyset,
    KeyShare,
    RecoveryAck,
    RecoveryPush,
    RecoverySession,
    check_recovery_ack,
    check_recovery_session,
    make_hello,
    make_recovery_ack,
    make_recovery_session,
    open_backup,
    open_recovery,
    seal_backup,
    seal_recovery,
)

NOW = 1_700_000_000_000
EPOCH = 3

SERVICE = Ed25519Signer(b"\x11" * 32)
ENCRYPTION = KxKeyPair.from_seed(b"\x12" * 32)
SERVICE_EPHEMERAL = KxKeyPair.from_seed(b"\x13" * 32)
NODE = Ed25519Signer(b"\x21" * 32)
NODE_EPHEMERAL = KxKeyPair.from_seed(b"\x23" * 32)
# Any valid points will do as group keys: sealing does not check shares against them.
KEYSET = Keyset(
    EPOCH,
    (
        DomainKey(0, "Ed25519", Ed25519Signer(b"\x30" * 32).public_key),
        DomainKey(5, "Ed25519", Ed25519Signer(b"\x31" * 32).public_key),
    ),
)
SHARES = [
    KeyShare(0, EPOCH, 2, (7).to_bytes(32, "little")),
    KeyShare(5, EPOCH, 2, (11).to_bytes(32, "little")),
]


def fixed_random(first: int) -> RandomBytes:
    """Each draw is one repeated byte: ``first``, then ``first + 1``, …"""
    draws = iter(range(first, 256))

    def random_bytes(size: int) -> bytes:
        return bytes([next(draws)]) * size

    return random_bytes


@dataclass(frozen=True)
class Exchange:
    """One backup and one recovery, every message of both flows."""

    backup_hello: Hello
    backup_response: BackupResponse
    recovery_hello: Hello
    recovery_session: RecoverySession
    recovery_push: RecoveryPush
    recovery_ack: RecoveryAck


def build() -> Exchange:
    def hello(purpose: Any, random_bytes: RandomBytes) -> Hello:
        return make_hello(
            purpose,
            account="alice",
            node_tls_public_key=NODE.public_key,
            identity=SERVICE,
            ephemeral=SERVICE_EPHEMERAL,
            now_ms=NOW,
            random_bytes=random_bytes,
        )

    backup_hello = hello("backup", fixed_random(0x40))
    response = seal_backup(
        backup_hello,
        node=NODE,
        service_encryption_public_key=ENCRYPTION.public_key,
        keyset=KEYSET,
        shares=SHARES,
        now_ms=NOW + 250,
        random_bytes=fixed_random(0x50),
    )
    recovery_hello = hello("recovery", fixed_random(0x60))
    session = make_recovery_session(
        recovery_hello,
        node=NODE,
        node_ephemeral=NODE_EPHEMERAL,
        migration_started_height=42,
        now_ms=NOW + 100,
        random_bytes=fixed_random(0x70),
    )
    push = seal_recovery(
        session,
        identity=SERVICE,
        service_ephemeral=SERVICE_EPHEMERAL,
        service_encryption=ENCRYPTION,
        keyset=KEYSET,
        shares=SHARES,
        now_ms=NOW + 200,
        random_bytes=fixed_random(0x80),
    )
    ack = make_recovery_ack(push, node=NODE)
    return Exchange(backup_hello, response, recovery_hello, session, push, ack)


@pytest.fixture(scope="module")
def exchange() -> Exchange:
    return build()


JSON_MESSAGES: dict[str, Any] = {
    "backup_response": BackupResponse,
    "recovery_session": RecoverySession,
    "recovery_push": RecoveryPush,
    "recovery_ack": RecoveryAck,
}

DROP = object()
"""In a malformed case's changes: remove this field."""


def changed(document: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(document)
    for name, value in changes.items():
        if value is DROP:
            del out[name]
        else:
            out[name] = value
    return out


STATEMENTS: dict[str, str] = {
    "backup_hello": (
        "71756f72756d6b656570206261636b7570207631000000000568656c6c6f0000"
        "000700000007707572706f7365000000066261636b7570000000076163636f75"
        "6e7400000005616c696365000000136e6f64655f746c735f7075626c69635f6b"
        "657900000020884b8857f4eaa1613c61504db34d4beaf346517a0e31de3cddd4"
        "d9b4201d9d0b0000001b736572766963655f6964656e746974795f7075626c69"
        "635f6b657900000020d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016b"
        "af8520a332c97787370000001c736572766963655f657068656d6572616c5f70"
        "75626c69635f6b657900000020d07e3fd361303ee1be9faf502f3b3c0fb4ebbb"
        "39ce1b0a5a4a188c3fe4dc0e400000000c74696d657374616d705f6d73000000"
        "0d31373030303030303030303030000000056e6f6e6365000000104040404040"
        "4040404040404040404040"
    ),
    "backup_response": (
        "71756f72756d6b656570206261636b7570207631000000000f6261636b75702d"
        "726573706f6e73650000000b000000076163636f756e7400000005616c696365"
        "000000136e6f64655f746c735f7075626c69635f6b657900000020884b8857f4"
        "eaa1613c61504db34d4beaf346517a0e31de3cddd4d9b4201d9d0b0000001b73"
        "6572766963655f6964656e746974795f7075626c69635f6b657900000020d04a"
        "b232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c97787370000"
        "001d736572766963655f656e6372797074696f6e5f7075626c69635f6b657900"
        "000020a900f0c1daa2052eda6fd249b2556771a2bffc464e3f1ae98fa1744db5"
        "9a72790000001c736572766963655f657068656d6572616c5f7075626c69635f"
        "6b657900000020d07e3fd361303ee1be9faf502f3b3c0fb4ebbb39ce1b0a5a4a"
        "188c3fe4dc0e40000000196e6f64655f657068656d6572616c5f7075626c6963"
        "5f6b6579000000203779d284b1695c14ce32934742d093e284f067e9cf674617"
        "fae6b13d955e66050000000d726571756573745f6e6f6e636500000010404040"
        "404040404040404040404040400000000565706f636800000001330000000b6b"
        "65797365745f6861736800000020cf933e9c6c826bac26e1d0f9e5f45e6fbfa5"
        "9035d4950f9b255eeb24d63e3ded0000000c74696d657374616d705f6d730000"
        "000d313730303030303030303235300000000a63697068657274657874000001"
        "5851515151515151515151515151515151515151515151515110ed5f0dd7865c"
        "14ec9f511f4f9bc20455ae497429f49a1d32e19ed7aece6986816b32c506683b"
        "782c2ab0e8f0351e3f171b4daac6e110db4bf3a2be05b47a3ca4811c283d9e46"
        "0e41b23cd914029e8ab473c3e45f6ccc45e8f4b74c6302fcc068fb910500bcf5"
        "4fb4a37f7894fb084e916c8a6c5c084a9208f795d269f7445a554d831ed33732"
        "f88bcd71cbd2481af4ebc027b96c92a45c9887c9285e0a701f895ac4d20a4a9b"
        "aed6de1584e2dcf0db5e67b00c3a460f39c79acdda6a7496d10b0e7107b1e361"
        "3f80a879a783a48e4549ed222fdebf1b6510b15dc68af149cdccd3441f9b349c"
        "31739573db3c955e6bf5af7dc41c8344f5fbb80a0e401d817a62ba1f0f101d49"
        "1af816374ab6a5286d3e07aa87a49958d38b794a99e7e3599b240d19e0290503"
        "f720bc2d240e5ef442944487bc66b9c9e9b3c28b6a805410e0"
    ),
    "recovery_hello": (
        "71756f72756d6b656570206261636b7570207631000000000568656c6c6f0000"
        "000700000007707572706f7365000000087265636f7665727900000007616363"
        "6f756e7400000005616c696365000000136e6f64655f746c735f7075626c6963"
        "5f6b657900000020884b8857f4eaa1613c61504db34d4beaf346517a0e31de3c"
        "ddd4d9b4201d9d0b0000001b736572766963655f6964656e746974795f707562"
        "6c69635f6b657900000020d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a"
        "016baf8520a332c97787370000001c736572766963655f657068656d6572616c"
        "5f7075626c69635f6b657900000020d07e3fd361303ee1be9faf502f3b3c0fb4"
        "ebbb39ce1b0a5a4a188c3fe4dc0e400000000c74696d657374616d705f6d7300"
        "00000d31373030303030303030303030000000056e6f6e636500000010606060"
        "60606060606060606060606060"
    ),
    "recovery_session": (
        "71756f72756d6b656570206261636b757020763100000000107265636f766572"
        "792d73657373696f6e00000009000000076163636f756e7400000005616c6963"
        "65000000136e6f64655f746c735f7075626c69635f6b657900000020884b8857"
        "f4eaa1613c61504db34d4beaf346517a0e31de3cddd4d9b4201d9d0b0000001b"
        "736572766963655f6964656e746974795f7075626c69635f6b657900000020d0"
        "4ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c977873700"
        "00001c736572766963655f657068656d6572616c5f7075626c69635f6b657900"
        "000020d07e3fd361303ee1be9faf502f3b3c0fb4ebbb39ce1b0a5a4a188c3fe4"
        "dc0e40000000196e6f64655f657068656d6572616c5f7075626c69635f6b6579"
        "0000002025716c7afa1354a88c75a96fea9dcd73cb479d7dc949cafc7b62695b"
        "2ace4a200000000d726571756573745f6e6f6e63650000001060606060606060"
        "6060606060606060600000000a73657373696f6e5f6964000000107070707070"
        "7070707070707070707070000000186d6967726174696f6e5f73746172746564"
        "5f6865696768740000000234320000000d657870697265735f61745f6d730000"
        "000d31373030303030313230313030"
    ),
    "recovery_push": (
        "71756f72756d6b656570206261636b7570207631000000000f7265636f766572"
        "792d7368617265730000000c000000076163636f756e7400000005616c696365"
        "000000136e6f64655f746c735f7075626c69635f6b657900000020884b8857f4"
        "eaa1613c61504db34d4beaf346517a0e31de3cddd4d9b4201d9d0b0000001b73"
        "6572766963655f6964656e746974795f7075626c69635f6b657900000020d04a"
        "b232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c97787370000"
        "001d736572766963655f656e6372797074696f6e5f7075626c69635f6b657900"
        "000020a900f0c1daa2052eda6fd249b2556771a2bffc464e3f1ae98fa1744db5"
        "9a72790000001c736572766963655f657068656d6572616c5f7075626c69635f"
        "6b657900000020d07e3fd361303ee1be9faf502f3b3c0fb4ebbb39ce1b0a5a4a"
        "188c3fe4dc0e40000000196e6f64655f657068656d6572616c5f7075626c6963"
        "5f6b65790000002025716c7afa1354a88c75a96fea9dcd73cb479d7dc949cafc"
        "7b62695b2ace4a200000000a73657373696f6e5f696400000010707070707070"
        "707070707070707070700000000565706f636800000001330000000b6b657973"
        "65745f6861736800000020cf933e9c6c826bac26e1d0f9e5f45e6fbfa59035d4"
        "950f9b255eeb24d63e3ded0000000c74696d657374616d705f6d730000000d31"
        "373030303030303030323030000000056e6f6e63650000001080808080808080"
        "8080808080808080800000000a63697068657274657874000001588181818181"
        "81818181818181818181818181818181818181bba322b19a1bbff8c0eca9fa1a"
        "f2cc820ac748024b978f42ade4b715e52fecdf5e8a4f6e81a4530d6f269eb153"
        "ec9cd623b745db3048d68f9a546897c623f569f97cb2f9b9692573bba2660e46"
        "fc7e77cc67d2c543b4d5729f3f1d82dd82556c8c1b80c17668230e96920081eb"
        "3ead514ac6710f50fecebaf3f95e6ae89dc353261a151d086a76d6c4d1f4f4b1"
        "e5c9ef52aa2228e71d9de638e88e59b36b93c7babd18bc64e49e5609bbb1d048"
        "e7dcf352ad8c3543e193312ef53905ffbb9890c6123357cce278e8364766c763"
        "44529aa2499d37a49c96f60872fe05c7ada103abe05b26c2c6e2e6e0c674c1c2"
        "fd5c710d757ef01a5312041e13bde0191c06b7a21786c1b53b019eabc193bcb1"
        "4a90e5bc9c3c13a529fdbd96632ad7d84ca1ed8cb81f2e96e25dbf70460a3af3"
        "196ff1befa8aeac6fab10c3135eee8fd36bc34"
    ),
    "recovery_ack": (
        "71756f72756d6b656570206261636b7570207631000000000c7265636f766572"
        "792d61636b000000060000000673746174757300000008696d706f7274656400"
        "0000076163636f756e7400000005616c696365000000136e6f64655f746c735f"
        "7075626c69635f6b657900000020884b8857f4eaa1613c61504db34d4beaf346"
        "517a0e31de3cddd4d9b4201d9d0b0000000a73657373696f6e5f696400000010"
        "707070707070707070707070707070700000000565706f636800000001330000"
        "000b6b65797365745f6861736800000020cf933e9c6c826bac26e1d0f9e5f45e"
        "6fbfa59035d4950f9b255eeb24d63e3ded"
    ),
}

JSON: dict[str, dict[str, Any]] = {
    "backup_response": {
        "version": 1,
        "account": "alice",
        "node_tls_public_key": ("884b8857f4eaa1613c61504db34d4beaf346517a0e31de3cddd4d9b4201d9d0b"),
        "service_identity_public_key": (
            "d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c9778737"
        ),
        "service_encryption_public_key": (
            "a900f0c1daa2052eda6fd249b2556771a2bffc464e3f1ae98fa1744db59a7279"
        ),
        "service_ephemeral_public_key": (
            "d07e3fd361303ee1be9faf502f3b3c0fb4ebbb39ce1b0a5a4a188c3fe4dc0e40"
        ),
        "node_ephemeral_public_key": (
            "3779d284b1695c14ce32934742d093e284f067e9cf674617fae6b13d955e6605"
        ),
        "request_nonce": "40404040404040404040404040404040",
        "keyset": {
            "epoch": 3,
            "domains": [
                {
                    "domain_id": 0,
                    "scheme": "Ed25519",
                    "public_key": (
                        "1ba4075b77c9e3fb3ecde15cdaf5221f3c10373e623f7b0e1ef76366b0af7137"
                    ),
                },
                {
                    "domain_id": 5,
                    "scheme": "Ed25519",
                    "public_key": (
                        "48075a597e721a156e2e0799de5cc0c5324dc6e7eaf1cdd46250868ec53215dd"
                    ),
                },
            ],
        },
        "keyset_hash": ("cf933e9c6c826bac26e1d0f9e5f45e6fbfa59035d4950f9b255eeb24d63e3ded"),
        "timestamp_ms": 1700000000250,
        "ciphertext": (
            "51515151515151515151515151515151515151515151515110ed5f0dd7865c14"
            "ec9f511f4f9bc20455ae497429f49a1d32e19ed7aece6986816b32c506683b78"
            "2c2ab0e8f0351e3f171b4daac6e110db4bf3a2be05b47a3ca4811c283d9e460e"
            "41b23cd914029e8ab473c3e45f6ccc45e8f4b74c6302fcc068fb910500bcf54f"
            "b4a37f7894fb084e916c8a6c5c084a9208f795d269f7445a554d831ed33732f8"
            "8bcd71cbd2481af4ebc027b96c92a45c9887c9285e0a701f895ac4d20a4a9bae"
            "d6de1584e2dcf0db5e67b00c3a460f39c79acdda6a7496d10b0e7107b1e3613f"
            "80a879a783a48e4549ed222fdebf1b6510b15dc68af149cdccd3441f9b349c31"
            "739573db3c955e6bf5af7dc41c8344f5fbb80a0e401d817a62ba1f0f101d491a"
            "f816374ab6a5286d3e07aa87a49958d38b794a99e7e3599b240d19e0290503f7"
            "20bc2d240e5ef442944487bc66b9c9e9b3c28b6a805410e0"
        ),
        "signature": (
            "2099d313b29cd2aff1cd4f47ad1dd4e1df40eb2a388c891f05906ca42c9652c4"
            "22ef0f84d26fb1aa9b072b1c23681511551034a6238a4a5bd7dc0021e3364003"
        ),
    },
    "recovery_session": {
        "version": 1,
        "account": "alice",
        "node_tls_public_key": ("884b8857f4eaa1613c61504db34d4beaf346517a0e31de3cddd4d9b4201d9d0b"),
        "service_identity_public_key": (
            "d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c9778737"
        ),
        "service_ephemeral_public_key": (
            "d07e3fd361303ee1be9faf502f3b3c0fb4ebbb39ce1b0a5a4a188c3fe4dc0e40"
        ),
        "node_ephemeral_public_key": (
            "25716c7afa1354a88c75a96fea9dcd73cb479d7dc949cafc7b62695b2ace4a20"
        ),
        "request_nonce": "60606060606060606060606060606060",
        "session_id": "70707070707070707070707070707070",
        "migration_started_height": 42,
        "expires_at_ms": 1700000120100,
        "signature": (
            "325148810e42149d26e36383bd1e2da1eedb45fa8cc3b845ac0fcdce990952b1"
            "1800b695a729dcb5ee3ea97b1914ef13f5ce6e5e58ead4f18b6fc7fbbf954e03"
        ),
    },
    "recovery_push": {
        "version": 1,
        "account": "alice",
        "node_tls_public_key": ("884b8857f4eaa1613c61504db34d4beaf346517a0e31de3cddd4d9b4201d9d0b"),
        "service_identity_public_key": (
            "d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c9778737"
        ),
        "service_encryption_public_key": (
            "a900f0c1daa2052eda6fd249b2556771a2bffc464e3f1ae98fa1744db59a7279"
        ),
        "service_ephemeral_public_key": (
            "d07e3fd361303ee1be9faf502f3b3c0fb4ebbb39ce1b0a5a4a188c3fe4dc0e40"
        ),
        "node_ephemeral_public_key": (
            "25716c7afa1354a88c75a96fea9dcd73cb479d7dc949cafc7b62695b2ace4a20"
        ),
        "session_id": "70707070707070707070707070707070",
        "keyset": {
            "epoch": 3,
            "domains": [
                {
                    "domain_id": 0,
                    "scheme": "Ed25519",
                    "public_key": (
                        "1ba4075b77c9e3fb3ecde15cdaf5221f3c10373e623f7b0e1ef76366b0af7137"
                    ),
                },
                {
                    "domain_id": 5,
                    "scheme": "Ed25519",
                    "public_key": (
                        "48075a597e721a156e2e0799de5cc0c5324dc6e7eaf1cdd46250868ec53215dd"
                    ),
                },
            ],
        },
        "keyset_hash": ("cf933e9c6c826bac26e1d0f9e5f45e6fbfa59035d4950f9b255eeb24d63e3ded"),
        "timestamp_ms": 1700000000200,
        "nonce": "80808080808080808080808080808080",
        "ciphertext": (
            "818181818181818181818181818181818181818181818181bba322b19a1bbff8"
            "c0eca9fa1af2cc820ac748024b978f42ade4b715e52fecdf5e8a4f6e81a4530d"
            "6f269eb153ec9cd623b745db3048d68f9a546897c623f569f97cb2f9b9692573"
            "bba2660e46fc7e77cc67d2c543b4d5729f3f1d82dd82556c8c1b80c17668230e"
            "96920081eb3ead514ac6710f50fecebaf3f95e6ae89dc353261a151d086a76d6"
            "c4d1f4f4b1e5c9ef52aa2228e71d9de638e88e59b36b93c7babd18bc64e49e56"
            "09bbb1d048e7dcf352ad8c3543e193312ef53905ffbb9890c6123357cce278e8"
            "364766c76344529aa2499d37a49c96f60872fe05c7ada103abe05b26c2c6e2e6"
            "e0c674c1c2fd5c710d757ef01a5312041e13bde0191c06b7a21786c1b53b019e"
            "abc193bcb14a90e5bc9c3c13a529fdbd96632ad7d84ca1ed8cb81f2e96e25dbf"
            "70460a3af3196ff1befa8aeac6fab10c3135eee8fd36bc34"
        ),
        "signature": (
            "53bedcba24be61dd9624cafffa03f2cf335486c4c8e25d50a7db883c97cd542f"
            "ed202462bf9a00f592e76c40deaac68df640d34a5f1d0615f1743b0720b60405"
        ),
    },
    "recovery_ack": {
        "version": 1,
        "status": "imported",
        "account": "alice",
        "node_tls_public_key": ("884b8857f4eaa1613c61504db34d4beaf346517a0e31de3cddd4d9b4201d9d0b"),
        "session_id": "70707070707070707070707070707070",
        "keyset_hash": ("cf933e9c6c826bac26e1d0f9e5f45e6fbfa59035d4950f9b255eeb24d63e3ded"),
        "epoch": 3,
        "signature": (
            "ee1e1cecce0e734a50b2953462484fb34b654634b976308e1c3a51a57f70477d"
            "55171ed3178a200bea8b4be4f3e1d75187c71e101a3483bb54c60b270c02fa06"
        ),
    },
}

HEADERS: dict[str, dict[str, str]] = {
    "backup_hello": {
        "quorumkeep-purpose": "backup",
        "quorumkeep-account": "alice",
        "quorumkeep-node-key": ("884b8857f4eaa1613c61504db34d4beaf346517a0e31de3cddd4d9b4201d9d0b"),
        "quorumkeep-service-key": (
            "d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c9778737"
        ),
        "quorumkeep-ephemeral-key": (
            "d07e3fd361303ee1be9faf502f3b3c0fb4ebbb39ce1b0a5a4a188c3fe4dc0e40"
        ),
        "quorumkeep-timestamp": "1700000000000",
        "quorumkeep-nonce": "40404040404040404040404040404040",
        "quorumkeep-signature": (
            "016b5648af8ef3f3f98ee7b7c85da114f646cdda19af741ea86bab869e31e342"
            "8fd1fe438e00af3d19a1693ff60d78aec9887267bbb9fa1effc9f52ecd99ae09"
        ),
    },
    "recovery_hello": {
        "quorumkeep-purpose": "recovery",
        "quorumkeep-account": "alice",
        "quorumkeep-node-key": ("884b8857f4eaa1613c61504db34d4beaf346517a0e31de3cddd4d9b4201d9d0b"),
        "quorumkeep-service-key": (
            "d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c9778737"
        ),
        "quorumkeep-ephemeral-key": (
            "d07e3fd361303ee1be9faf502f3b3c0fb4ebbb39ce1b0a5a4a188c3fe4dc0e40"
        ),
        "quorumkeep-timestamp": "1700000000000",
        "quorumkeep-nonce": "60606060606060606060606060606060",
        "quorumkeep-signature": (
            "9d49debaffc10b0cb48cb1dfc1a3f4fa6d5a208765ae580ebc38bad16c695a35"
            "489c73d1d620cffab469f32c05420f89d3fe498e6b2570e5a85a4cb8a0eedc0c"
        ),
    },
}

MALFORMED = [
    pytest.param(
        "backup_response",
        {"signature": DROP},
        "malformed_request",
        "backup response: missing signature",
        id="response-missing",
    ),
    pytest.param(
        "backup_response",
        {"extra": 1},
        "malformed_request",
        "backup response: unknown extra",
        id="response-unknown",
    ),
    pytest.param(
        "backup_response",
        {"keyset_hash": DROP, "zz": 0, "aa": 0},
        "malformed_request",
        "backup response: missing keyset_hash; unknown aa, zz",
        id="response-missing-and-unknown",
    ),
    pytest.param(
        "backup_response",
        {"version": 2},
        "malformed_request",
        "backup response: unsupported version",
        id="response-version",
    ),
    pytest.param(
        "backup_response",
        {"version": "1"},
        "malformed_request",
        "backup response: unsupported version",
        id="response-version-text",
    ),
    pytest.param(
        "backup_response",
        {"node_tls_public_key": "00" * 31},
        "malformed_request",
        "node_tls_public_key: expected 32 bytes, got 31",
        id="response-key-length",
    ),
    pytest.param(
        "backup_response",
        {"service_identity_public_key": "AB" * 32},
        "malformed_request",
        "service_identity_public_key: expected lowercase hex",
        id="response-uppercase-hex",
    ),
    pytest.param(
        "backup_response",
        {"service_encryption_public_key": "00" * 33},
        "malformed_request",
        "service_encryption_public_key: expected 32 bytes, got 33",
        id="response-encryption-key-length",
    ),
    pytest.param(
        "backup_response",
        {"node_ephemeral_public_key": "00" * 32},
        "malformed_request",
        "node_ephemeral_public_key: the all-zero X25519 key is not a key",
        id="response-zero-ephemeral",
    ),
    pytest.param(
        "backup_response",
        {"service_ephemeral_public_key": "00" * 32},
        "malformed_request",
        "service_ephemeral_public_key: the all-zero X25519 key is not a key",
        id="response-zero-service-ephemeral",
    ),
    pytest.param(
        "backup_response",
        {"keyset_hash": "00" * 32},
        "malformed_request",
        "backup response: keyset_hash is not the keyset's hash",
        id="response-keyset-hash",
    ),
    pytest.param(
        "backup_response",
        {"keyset_hash": "00" * 31},
        "malformed_request",
        "keyset_hash: expected 32 bytes, got 31",
        id="response-keyset-hash-length",
    ),
    pytest.param(
        "backup_response",
        {"keyset": {"epoch": 3, "domains": [], "x": 1}},
        "malformed_request",
        "backup response keyset: unknown x",
        id="response-keyset",
    ),
    pytest.param(
        "backup_response",
        {"keyset": {"epoch": 4, "domains": []}},
        "malformed_request",
        "backup response: keyset_hash is not the keyset's hash",
        id="response-other-keyset",
    ),
    pytest.param(
        "backup_response",
        {"account": "Alice"},
        "malformed_request",
        "account: expected an account name matching ^[a-z0-9_\\-.]{2,64}$",
        id="response-account",
    ),
    pytest.param(
        "backup_response",
        {"timestamp_ms": True},
        "malformed_request",
        "timestamp_ms: expected an integer in [0, 9223372036854775807]",
        id="response-timestamp-bool",
    ),
    pytest.param(
        "backup_response",
        {"timestamp_ms": -1},
        "malformed_request",
        "timestamp_ms: expected an integer in [0, 9223372036854775807]",
        id="response-timestamp-negative",
    ),
    pytest.param(
        "backup_response",
        {"ciphertext": "00" * (MAX_BODY_BYTES + 1)},
        "malformed_request",
        "ciphertext: longer than 262144 bytes",
        id="response-ciphertext-too-long",
    ),
    pytest.param(
        "backup_response",
        {"request_nonce": "00" * 15},
        "malformed_request",
        "request_nonce: expected 16 bytes, got 15",
        id="response-request-nonce",
    ),
    pytest.param(
        "backup_response",
        {"signature": "00" * 63},
        "malformed_request",
        "signature: expected 64 bytes, got 63",
        id="response-signature",
    ),
    pytest.param(
        "backup_response",
        {"account": "A", "keyset_hash": "00" * 32},
        "malformed_request",
        "backup response: keyset_hash is not the keyset's hash",
        id="response-keyset-before-account",
    ),
    pytest.param(
        "backup_response",
        {"account": "A", "signature": ""},
        "malformed_request",
        "account: expected an account name matching ^[a-z0-9_\\-.]{2,64}$",
        id="response-account-before-signature",
    ),
    pytest.param(
        "backup_response",
        {"version": 0, "keyset_hash": "00" * 32},
        "malformed_request",
        "backup response: unsupported version",
        id="response-version-before-keyset",
    ),
    pytest.param(
        "backup_response",
        lambda document: list(document),
        "malformed_request",
        "backup response: expected a JSON object",
        id="response-not-an-object",
    ),
    pytest.param(
        "recovery_session",
        {"expires_at_ms": DROP},
        "malformed_request",
        "recovery session: missing expires_at_ms",
        id="session-missing",
    ),
    pytest.param(
        "recovery_session",
        {"keyset": {}},
        "malformed_request",
        "recovery session: unknown keyset",
        id="session-unknown",
    ),
    pytest.param(
        "recovery_session",
        {"version": 0},
        "malformed_request",
        "recovery session: unsupported version",
        id="session-version",
    ),
    pytest.param(
        "recovery_session",
        {"session_id": "00" * 15},
        "malformed_request",
        "session_id: expected 16 bytes, got 15",
        id="session-id",
    ),
    pytest.param(
        "recovery_session",
        {"service_ephemeral_public_key": "00" * 32},
        "malformed_request",
        "service_ephemeral_public_key: the all-zero X25519 key is not a key",
        id="session-zero-ephemeral",
    ),
    pytest.param(
        "recovery_session",
        {"migration_started_height": 2**63},
        "malformed_request",
        "migration_started_height: expected an integer in [0, 9223372036854775807]",
        id="session-height",
    ),
    pytest.param(
        "recovery_session",
        {"node_tls_public_key": "0"},
        "malformed_request",
        "node_tls_public_key: expected lowercase hex",
        id="session-odd-hex",
    ),
    pytest.param(
        "recovery_session",
        {"request_nonce": 1},
        "malformed_request",
        "request_nonce: expected lowercase hex",
        id="session-request-nonce",
    ),
    pytest.param(
        "recovery_session",
        {"expires_at_ms": 1.5},
        "malformed_request",
        "expires_at_ms: expected an integer in [0, 9223372036854775807]",
        id="session-expiry",
    ),
    pytest.param(
        "recovery_push",
        {"keyset": DROP},
        "malformed_request",
        "recovery push: missing keyset",
        id="push-missing",
    ),
    pytest.param(
        "recovery_push",
        {"version": 2},
        "malformed_request",
        "recovery push: unsupported version",
        id="push-version",
    ),
    pytest.param(
        "recovery_push",
        {"keyset_hash": "11" * 32},
        "malformed_request",
        "recovery push: keyset_hash is not the keyset's hash",
        id="push-keyset-hash",
    ),
    pytest.param(
        "recovery_push",
        {"keyset": {"epoch": -1, "domains": []}},
        "malformed_request",
        "recovery push keyset.epoch: expected an integer in [0, 9223372036854775807]",
        id="push-keyset",
    ),
    pytest.param(
        "recovery_push",
        {"nonce": "00" * 17},
        "malformed_request",
        "nonce: expected 16 bytes, got 17",
        id="push-nonce",
    ),
    pytest.param(
        "recovery_push",
        {"session_id": ""},
        "malformed_request",
        "session_id: expected 16 bytes, got 0",
        id="push-session-id",
    ),
    pytest.param(
        "recovery_push",
        {"service_encryption_public_key": "00" * 33},
        "malformed_request",
        "service_encryption_public_key: expected 32 bytes, got 33",
        id="push-encryption-key",
    ),
    pytest.param(
        "recovery_push",
        {"node_ephemeral_public_key": "00" * 32},
        "malformed_request",
        "node_ephemeral_public_key: the all-zero X25519 key is not a key",
        id="push-zero-node-ephemeral",
    ),
    pytest.param(
        "recovery_push",
        {"timestamp_ms": "1"},
        "malformed_request",
        "timestamp_ms: expected an integer in [0, 9223372036854775807]",
        id="push-timestamp",
    ),
    pytest.param(
        "recovery_push",
        {"ciphertext": "xyz"},
        "malformed_request",
        "ciphertext: expected lowercase hex",
        id="push-ciphertext",
    ),
    pytest.param(
        "recovery_ack",
        {"status": DROP},
        "malformed_request",
        "recovery ack: missing status",
        id="ack-missing",
    ),
    pytest.param(
        "recovery_ack",
        {"keyset": {}},
        "malformed_request",
        "recovery ack: unknown keyset",
        id="ack-unknown",
    ),
    pytest.param(
        "recovery_ack",
        {"version": 2},
        "malformed_request",
        "recovery ack: unsupported version or status",
        id="ack-version",
    ),
    pytest.param(
        "recovery_ack",
        {"status": "done"},
        "malformed_request",
        "recovery ack: unsupported version or status",
        id="ack-status",
    ),
    pytest.param(
        "recovery_ack",
        {"keyset_hash": "00" * 31},
        "malformed_request",
        "keyset_hash: expected 32 bytes, got 31",
        id="ack-keyset-hash",
    ),
    pytest.param(
        "recovery_ack",
        {"epoch": -1},
        "malformed_request",
        "epoch: expected an integer in [0, 9223372036854775807]",
        id="ack-epoch",
    ),
    pytest.param(
        "recovery_ack",
        {"session_id": "00" * 17},
        "malformed_request",
        "session_id: expected 16 bytes, got 17",
        id="ack-session-id",
    ),
    pytest.param(
        "recovery_ack",
        {"account": None},
        "malformed_request",
        "account: expected an account name matching ^[a-z0-9_\\-.]{2,64}$",
        id="ack-account",
    ),
    pytest.param(
        "recovery_ack",
        {"node_tls_public_key": "00" * 33},
        "malformed_request",
        "node_tls_public_key: expected 32 bytes, got 33",
        id="ack-node-key",
    ),
    pytest.param(
        "recovery_ack",
        lambda document: "imported",
        "malformed_request",
        "recovery ack: expected a JSON object",
        id="ack-not-an-object",
    ),
]

MALFORMED_HEADERS = [
    pytest.param(
        "quorumkeep-purpose",
        "restore",
        "malformed_request",
        "quorumkeep-purpose: expected backup or recovery",
        id="purpose",
    ),
    pytest.param(
        "quorumkeep-account",
        "Alice!",
        "malformed_request",
        "quorumkeep-account: expected an account name matching ^[a-z0-9_\\-.]{2,64}$",
        id="account",
    ),
    pytest.param(
        "quorumkeep-node-key",
        "00" * 31,
        "malformed_request",
        "quorumkeep-node-key: expected 32 bytes, got 31",
        id="node-key",
    ),
    pytest.param(
        "quorumkeep-service-key",
        "zz" * 32,
        "malformed_request",
        "quorumkeep-service-key: expected lowercase hex",
        id="service-key",
    ),
    pytest.param(
        "quorumkeep-ephemeral-key",
        "00" * 32,
        "malformed_request",
        "quorumkeep-ephemeral-key: the all-zero X25519 key is not a key",
        id="zero-ephemeral",
    ),
    pytest.param(
        "quorumkeep-timestamp",
        "-5",
        "malformed_request",
        "quorumkeep-timestamp: expected milliseconds since the Unix epoch",
        id="timestamp",
    ),
    pytest.param(
        "quorumkeep-nonce",
        "AB" * 16,
        "malformed_request",
        "quorumkeep-nonce: expected lowercase hex",
        id="nonce",
    ),
    pytest.param(
        "quorumkeep-signature",
        "00" * 63,
        "malformed_request",
        "quorumkeep-signature: expected 64 bytes, got 63",
        id="signature",
    ),
    pytest.param(
        "quorumkeep-nonce",
        DROP,
        "malformed_request",
        "missing header(s): quorumkeep-nonce",
        id="missing",
    ),
]


@pytest.mark.parametrize("name", list(STATEMENTS))
def test_statement_bytes(exchange: Exchange, name: str) -> None:
    assert getattr(exchange, name).statement().hex() == STATEMENTS[name]


@pytest.mark.parametrize("name", list(JSON_MESSAGES))
def test_json_values_and_key_order(exchange: Exchange, name: str) -> None:
    message = getattr(exchange, name)
    document = message.to_json()
    assert document == JSON[name]
    assert list(document) == list(JSON[name])
    assert json.dumps(document) == json.dumps(JSON[name])
    assert JSON_MESSAGES[name].from_json(JSON[name]) == message
    assert JSON_MESSAGES[name].from_json(json.loads(json.dumps(document))) == message


@pytest.mark.parametrize("name", list(HEADERS))
def test_hello_headers(exchange: Exchange, name: str) -> None:
    hello = getattr(exchange, name)
    headers = hello.to_headers()
    assert headers == HEADERS[name]
    assert list(headers) == list(HEADERS[name])
    assert Hello.from_headers(HEADERS[name]) == hello
    hello.verify(SERVICE.public_key)


def test_the_pinned_messages_still_open_and_check(exchange: Exchange) -> None:
    """The signatures verify and the ciphertexts open: the literals are a real exchange."""
    shares = open_backup(
        BackupResponse.from_json(JSON["backup_response"]),
        hello=exchange.backup_hello,
        node_tls_public_key=NODE.public_key,
        service_ephemeral=SERVICE_EPHEMERAL,
        service_encryption=ENCRYPTION,
        now_ms=NOW + 250,
    )
    assert shares == SHARES
    check_recovery_session(
        RecoverySession.from_json(JSON["recovery_session"]),
        hello=exchange.recovery_hello,
        node_tls_public_key=NODE.public_key,
        now_ms=NOW + 100,
    )
    push = RecoveryPush.from_json(JSON["recovery_push"])
    push.verify(SERVICE.public_key)
    shares = open_recovery(
        push, node_ephemeral=NODE_EPHEMERAL, service_encryption_public_key=ENCRYPTION.public_key
    )
    assert shares == SHARES
    check_recovery_ack(RecoveryAck.from_json(JSON["recovery_ack"]), push=push)


@pytest.mark.parametrize(("name", "changes", "code", "message"), MALFORMED)
def test_malformed_json_is_refused_with_the_same_error(
    exchange: Exchange,
    name: str,
    changes: dict[str, Any] | Callable[[dict[str, Any]], object],
    code: str,
    message: str,
) -> None:
    document = getattr(exchange, name).to_json()
    value = changes(document) if callable(changes) else changed(document, changes)
    with pytest.raises(BackupProtocolError) as excinfo:
        JSON_MESSAGES[name].from_json(value)
    assert (excinfo.value.code, excinfo.value.message) == (code, message)


@pytest.mark.parametrize(("header", "value", "code", "message"), MALFORMED_HEADERS)
def test_malformed_hello_headers_are_refused_with_the_same_error(
    exchange: Exchange, header: str, value: Any, code: str, message: str
) -> None:
    headers = exchange.backup_hello.to_headers()
    if value is DROP:
        del headers[header]
    else:
        headers[header] = value
    with pytest.raises(BackupProtocolError) as excinfo:
        Hello.from_headers(headers)
    assert (excinfo.value.code, excinfo.value.message) == (code, message)
