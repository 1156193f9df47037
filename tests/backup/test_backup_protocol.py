"""The backup protocol's messages and crypto (quorumkeep.wire.backup), without I/O: round trips,
every rejection rule, the documented vector, and parsers that only ever raise the protocol's
typed error."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import pytest
from backup_helpers import deal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quorumkeep.crypto.group import BASE, ORDER
from quorumkeep.crypto.seal import KxKeyPair
from quorumkeep.wire.backup import (
    ERROR_STATUS,
    MAX_DOMAINS,
    TIMESTAMP_WINDOW_MS,
    BackupProtocolError,
    BackupResponse,
    DomainKey,
    Ed25519Signer,
    Hello,
    Keyset,
    KeyShare,
    PublicKeyPackageInfo,
    RecoveryAck,
    RecoveryPush,
    RecoverySession,
    ReplayGuard,
    backup_key_node,
    backup_key_service,
    check_recovery_ack,
    check_recovery_session,
    check_timestamp,
    decode_shares,
    encode_shares,
    make_hello,
    make_recovery_ack,
    make_recovery_session,
    open_backup,
    open_recovery,
    read_keyset,
    recovery_key_node,
    recovery_key_service,
    seal_backup,
    seal_recovery,
    statement,
    verify_shares,
)

NOW = 1_700_000_000_000
EPOCH = 3


def counter_random() -> Any:
    state = {"n": 0}

    def random_bytes(size: int) -> bytes:
        state["n"] += 1
        return bytes([state["n"] % 256]) * size

    return random_bytes


class Parties:
    """A node (pid 2 of 3), its backup service, two domains of trusted-dealer keys."""

    def __init__(self) -> None:
        self.service = Ed25519Signer(b"\x11" * 32)
        self.encryption = KxKeyPair.from_seed(b"\x12" * 32)
        self.node = Ed25519Signer(b"\x21" * 32)
        self.domains = [deal(0, 2, [1, 2, 3]), deal(1, 2, [1, 2, 3])]
        self.keyset = Keyset(
            EPOCH,
            tuple(
                DomainKey(d.domain_id, "Ed25519", d.public.group_public_key) for d in self.domains
            ),
        )
        self.packages = {
            d.domain_id: PublicKeyPackageInfo.from_json(d.package_json(EPOCH)) for d in self.domains
        }
        self.shares = [d.share(2, EPOCH) for d in self.domains]

    def hello(self, purpose: str = "backup", **changes: Any) -> tuple[Hello, KxKeyPair]:
        ephemeral = KxKeyPair.generate(os.urandom)
        hello = make_hello(
            purpose,  # type: ignore[arg-type]
            account="alice",
            node_tls_public_key=self.node.public_key,
            identity=self.service,
            ephemeral=ephemeral,
            now_ms=NOW,
            random_bytes=os.urandom,
        )
        return replace(hello, **changes), ephemeral

    def backup(self, **hello_changes: Any) -> tuple[Hello, KxKeyPair, BackupResponse]:
        hello, ephemeral = self.hello(**hello_changes)
        response = seal_backup(
            hello,
            node=self.node,
            service_encryption_public_key=self.encryption.public_key,
            keyset=self.keyset,
            shares=self.shares,
            now_ms=NOW,
            random_bytes=os.urandom,
        )
        return hello, ephemeral, response

    def session(self) -> tuple[RecoverySession, KxKeyPair, KxKeyPair]:
        hello, service_ephemeral = self.hello("recovery")
        node_ephemeral = KxKeyPair.generate(os.urandom)
        session = make_recovery_session(
            hello,
            node=self.node,
            node_ephemeral=node_ephemeral,
            migration_started_height=42,
            now_ms=NOW,
            random_bytes=os.urandom,
        )
        check_recovery_session(
            session, hello=hello, node_tls_public_key=self.node.public_key, now_ms=NOW
        )
        return session, service_ephemeral, node_ephemeral

    def push(self, **changes: Any) -> tuple[RecoveryPush, KxKeyPair]:
        session, service_ephemeral, node_ephemeral = self.session()
        push = seal_recovery(
            session,
            identity=self.service,
            service_ephemeral=service_ephemeral,
            service_encryption=self.encryption,
            keyset=self.keyset,
            shares=self.shares,
            now_ms=NOW,
            random_bytes=os.urandom,
        )
        return replace(push, **changes), node_ephemeral


@pytest.fixture(scope="module")
def parties() -> Parties:
    return Parties()


def code_of(excinfo: pytest.ExceptionInfo[BackupProtocolError]) -> str:
    return excinfo.value.code


# --- backup ---------------------------------------------------------------------------------


def test_backup_round_trip_through_headers_and_json(parties: Parties) -> None:
    hello, ephemeral, response = parties.backup()
    received = Hello.from_headers({k.upper(): v for k, v in hello.to_headers().items()})
    assert received == hello
    received.verify(parties.service.public_key)
    parsed = BackupResponse.from_json(response.to_json())
    assert parsed == response
    shares = open_backup(
        parsed,
        hello=hello,
        node_tls_public_key=parties.node.public_key,
        service_ephemeral=ephemeral,
        service_encryption=parties.encryption,
        now_ms=NOW + 1000,
    )
    assert shares == parties.shares
    verified = verify_shares("alice", 2, parties.keyset, shares, parties.packages)
    key, public = verified.key_packages()[1]
    assert key.identifier == 2 and public.group_public_key == parties.keyset.domains[1].public_key


def test_hello_signature_covers_every_field(parties: Parties) -> None:
    hello, _ = parties.hello()
    for changes in (
        {"purpose": "recovery"},
        {"account": "bob"},
        {"node_tls_public_key": b"\x01" * 32},
        {"service_ephemeral_public_key": b"\x02" * 32},
        {"timestamp_ms": NOW + 1},
        {"nonce": b"\x03" * 16},
    ):
        with pytest.raises(BackupProtocolError) as excinfo:
            replace(hello, **changes).verify(parties.service.public_key)
        assert code_of(excinfo) == "bad_signature"
    with pytest.raises(BackupProtocolError) as excinfo:
        hello.verify(Ed25519Signer(b"\x99" * 32).public_key)  # an unregistered key
    assert code_of(excinfo) == "bad_signature"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("quorumkeep-purpose", "restore"),
        ("quorumkeep-account", "Alice!"),
        ("quorumkeep-node-key", "00" * 31),
        ("quorumkeep-service-key", "zz" * 32),
        ("quorumkeep-ephemeral-key", "00" * 32),
        ("quorumkeep-timestamp", "-5"),
        ("quorumkeep-timestamp", "²"),  # a digit to str.isdigit, not to int()
        ("quorumkeep-timestamp", "١٧٠٠٠٠٠٠٠٠٠٠٠"),  # digits, but not ASCII ones
        ("quorumkeep-nonce", "AB" * 16),
        ("quorumkeep-signature", "00" * 63),
    ],
)
def test_malformed_hello_headers_are_refused(parties: Parties, header: str, value: str) -> None:
    hello, _ = parties.hello()
    headers = hello.to_headers()
    headers[header] = value
    with pytest.raises(BackupProtocolError) as excinfo:
        Hello.from_headers(headers)
    assert code_of(excinfo) == "malformed_request"
    del headers[header]
    with pytest.raises(BackupProtocolError, match="missing header"):
        Hello.from_headers(headers)


def test_tampered_backup_response_is_refused(parties: Parties) -> None:
    hello, ephemeral, response = parties.backup()

    def opened(resp: BackupResponse, **kwargs: Any) -> list[KeyShare]:
        args: dict[str, Any] = {
            "hello": hello,
            "node_tls_public_key": parties.node.public_key,
            "service_ephemeral": ephemeral,
            "service_encryption": parties.encryption,
            "now_ms": NOW,
            **kwargs,
        }
        return open_backup(resp, **args)

    flipped = bytearray(response.ciphertext)
    flipped[30] ^= 1
    with pytest.raises(BackupProtocolError) as excinfo:
        opened(replace(response, ciphertext=bytes(flipped)))
    assert code_of(excinfo) == "bad_signature"
    # The node itself signing a tampered ciphertext does not help: the AEAD refuses it.
    resigned = replace(response, ciphertext=bytes(flipped))
    resigned = replace(resigned, signature=parties.node.sign(resigned.statement()))
    with pytest.raises(BackupProtocolError) as excinfo:
        opened(resigned)
    assert code_of(excinfo) == "decryption_failed"
    # Signed by another key than the contract's TLS key of the node.
    impostor = Ed25519Signer(b"\x77" * 32)
    with pytest.raises(BackupProtocolError) as excinfo:
        opened(replace(response, signature=impostor.sign(response.statement())))
    assert code_of(excinfo) == "bad_signature"
    # An answer to another request.
    other, _ = parties.hello()
    with pytest.raises(BackupProtocolError) as excinfo:
        opened(response, hello=other)
    assert code_of(excinfo) == "malformed_response"
    with pytest.raises(BackupProtocolError) as excinfo:
        opened(response, now_ms=NOW + TIMESTAMP_WINDOW_MS + 1)
    assert code_of(excinfo) == "stale_timestamp"


def test_only_the_registered_encryption_key_opens_a_backup(parties: Parties) -> None:
    """Whoever holds the service's signing key but not its X25519 key learns nothing."""
    hello, ephemeral, response = parties.backup()
    thief = KxKeyPair.from_seed(b"\x55" * 32)
    stolen = replace(response, service_encryption_public_key=thief.public_key)
    stolen = replace(stolen, signature=parties.node.sign(stolen.statement()))
    with pytest.raises(BackupProtocolError) as excinfo:
        open_backup(
            stolen,
            hello=hello,
            node_tls_public_key=parties.node.public_key,
            service_ephemeral=ephemeral,
            service_encryption=thief,
            now_ms=NOW,
        )
    assert code_of(excinfo) == "decryption_failed"


def test_associated_data_binds_keyset_epoch_and_exchange(parties: Parties) -> None:
    """A sealed backup moved into a response claiming another keyset or exchange fails."""
    hello, ephemeral, response = parties.backup()
    other_keyset = Keyset(EPOCH + 1, parties.keyset.domains)
    for changes in ({"keyset": other_keyset}, {"request_nonce": hello.nonce[::-1]}):
        moved = replace(response, **changes)
        moved = replace(moved, signature=parties.node.sign(moved.statement()))
        if "request_nonce" in changes:
            hello = replace(hello, nonce=moved.request_nonce)
        with pytest.raises(BackupProtocolError) as excinfo:
            open_backup(
                moved,
                hello=hello,
                node_tls_public_key=parties.node.public_key,
                service_ephemeral=ephemeral,
                service_encryption=parties.encryption,
                now_ms=NOW,
            )
        assert code_of(excinfo) == "decryption_failed"


# --- recovery ---------------------------------------------------------------------------------


def test_recovery_round_trip(parties: Parties) -> None:
    push, node_ephemeral = parties.push()
    parsed = RecoveryPush.from_json(push.to_json())
    assert parsed == push
    parsed.verify(parties.service.public_key)
    shares = open_recovery(
        parsed,
        node_ephemeral=node_ephemeral,
        service_encryption_public_key=parties.encryption.public_key,
    )
    assert shares == parties.shares
    ack = make_recovery_ack(parsed, node=parties.node)
    check_recovery_ack(RecoveryAck.from_json(ack.to_json()), push=push)
    with pytest.raises(BackupProtocolError) as excinfo:
        check_recovery_ack(replace(ack, epoch=EPOCH + 1), push=push)
    assert code_of(excinfo) == "bad_signature"


def test_recovery_push_rejections(parties: Parties) -> None:
    push, node_ephemeral = parties.push()
    flipped = bytearray(push.ciphertext)
    flipped[-1] ^= 1
    with pytest.raises(BackupProtocolError) as excinfo:
        replace(push, ciphertext=bytes(flipped)).verify(parties.service.public_key)
    assert code_of(excinfo) == "bad_signature"
    # Validly signed but sealed for another session's node key: the node cannot open it.
    with pytest.raises(BackupProtocolError) as excinfo:
        open_recovery(
            push,
            node_ephemeral=KxKeyPair.generate(os.urandom),
            service_encryption_public_key=parties.encryption.public_key,
        )
    assert code_of(excinfo) == "decryption_failed"
    # A push naming an encryption key other than the registered one.
    with pytest.raises(BackupProtocolError) as excinfo:
        open_recovery(
            push,
            node_ephemeral=node_ephemeral,
            service_encryption_public_key=KxKeyPair.from_seed(b"\x56" * 32).public_key,
        )
    assert code_of(excinfo) == "unregistered_caller"
    # Re-labelled for another keyset (and re-signed by the service): the AD no longer matches.
    relabelled = replace(push, keyset=Keyset(EPOCH + 1, parties.keyset.domains))
    with pytest.raises(BackupProtocolError) as excinfo:
        open_recovery(
            relabelled,
            node_ephemeral=node_ephemeral,
            service_encryption_public_key=parties.encryption.public_key,
        )
    assert code_of(excinfo) == "decryption_failed"


def test_recovery_session_answers_only_its_hello(parties: Parties) -> None:
    hello, _ = parties.hello("recovery")
    session = make_recovery_session(
        hello,
        node=parties.node,
        node_ephemeral=KxKeyPair.generate(os.urandom),
        migration_started_height=7,
        now_ms=NOW,
        random_bytes=os.urandom,
    )
    assert RecoverySession.from_json(session.to_json()) == session
    other, _ = parties.hello("recovery")
    with pytest.raises(BackupProtocolError) as excinfo:
        check_recovery_session(
            session, hello=other, node_tls_public_key=parties.node.public_key, now_ms=NOW
        )
    assert code_of(excinfo) == "malformed_response"
    with pytest.raises(BackupProtocolError) as excinfo:
        check_recovery_session(session, hello=hello, node_tls_public_key=b"\x05" * 32, now_ms=NOW)
    assert code_of(excinfo) == "bad_signature"
    with pytest.raises(BackupProtocolError) as excinfo:
        check_recovery_session(
            session,
            hello=hello,
            node_tls_public_key=parties.node.public_key,
            now_ms=session.expires_at_ms,
        )
    assert code_of(excinfo) == "stale_timestamp"


# --- verification against the contract ------------------------------------------------------------


def test_verify_shares_accepts_exactly_matching_shares(parties: Parties) -> None:
    verified = verify_shares(
        "alice", 2, parties.keyset, list(reversed(parties.shares)), parties.packages
    )
    assert [s.domain_id for s in verified.shares] == [0, 1]
    assert "share" not in repr(verified).replace("shares", "")


def repackaged(info: PublicKeyPackageInfo, **changes: Any) -> PublicKeyPackageInfo:
    return replace(info, package=replace(info.package, **changes))


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda p: (p.keyset, p.shares[:1], p.packages, 2), "shares_mismatch"),
        (lambda p: (p.keyset, [*p.shares, p.shares[0]], p.packages, 2), "shares_mismatch"),
        (
            lambda p: (p.keyset, [replace(s, epoch=EPOCH - 1) for s in p.shares], p.packages, 2),
            "wrong_epoch",
        ),
        (lambda p: (p.keyset, p.shares, p.packages, 3), "shares_mismatch"),
        (
            # participant 3's shares passed off as participant 2's
            lambda p: (
                p.keyset,
                [replace(d.share(3, EPOCH), participant_id=2) for d in p.domains],
                p.packages,
                2,
            ),
            "shares_mismatch",
        ),
        (lambda p: (p.keyset, p.shares, {0: p.packages[0]}, 2), "shares_mismatch"),
        (
            lambda p: (
                p.keyset,
                p.shares,
                {**p.packages, 1: replace(p.packages[1], epoch=EPOCH - 1)},
                2,
            ),
            "wrong_keyset",
        ),
        (
            lambda p: (
                p.keyset,
                p.shares,
                {
                    **p.packages,
                    0: repackaged(p.packages[0], group_public_key=p.packages[1].public_key),
                },
                2,
            ),
            "wrong_keyset",
        ),
        (
            lambda p: (
                p.keyset,
                p.shares,
                {0: p.packages[0], 1: repackaged(p.packages[1], verifying_shares={1: b"", 3: b""})},
                2,
            ),
            "shares_mismatch",
        ),
        (lambda p: (Keyset(EPOCH, ()), [], {}, 2), "shares_mismatch"),
    ],
)
def test_verify_shares_refuses(parties: Parties, mutate: Any, code: str) -> None:
    keyset, shares, packages, pid = mutate(parties)
    with pytest.raises(BackupProtocolError) as excinfo:
        verify_shares("alice", pid, keyset, shares, packages)
    assert code_of(excinfo) == code
    for share in parties.shares:  # a refusal never shows a share
        assert share.signing_share.hex() not in str(excinfo.value)


# --- replay and time ------------------------------------------------------------------------------


def test_replay_guard_single_use_within_the_window() -> None:
    guard = ReplayGuard(capacity=2)
    guard.check_and_record(b"a" * 16, NOW, NOW)
    with pytest.raises(BackupProtocolError) as excinfo:
        guard.check_and_record(b"a" * 16, NOW, NOW + 10)
    assert code_of(excinfo) == "replay"
    guard.check_and_record(b"b" * 16, NOW, NOW)
    with pytest.raises(BackupProtocolError) as excinfo:
        guard.check_and_record(b"c" * 16, NOW, NOW)
    assert code_of(excinfo) == "too_many_requests"
    # Once the window has passed, the timestamp check refuses the old message anyway, so the
    # guard forgets it and has room again.
    later = NOW + TIMESTAMP_WINDOW_MS + 1
    guard.check_and_record(b"c" * 16, later, later)
    assert len(guard) == 1


def test_timestamp_window() -> None:
    check_timestamp(NOW - TIMESTAMP_WINDOW_MS, NOW)
    check_timestamp(NOW + TIMESTAMP_WINDOW_MS, NOW)
    for skew in (TIMESTAMP_WINDOW_MS + 1, -TIMESTAMP_WINDOW_MS - 1):
        with pytest.raises(BackupProtocolError) as excinfo:
            check_timestamp(NOW + skew, NOW)
        assert code_of(excinfo) == "stale_timestamp"


# --- encodings ------------------------------------------------------------------------------


def test_statement_encoding_is_injective() -> None:
    a = statement("hello", [("a", b"bc")])
    b = statement("hello", [("ab", b"c")])
    c = statement("hellO", [("a", b"bc")])
    d = statement("hello", [("a", "bc")])
    assert len({a, b, c}) == 3
    assert a == d  # strings are their UTF-8 bytes; field order and names fix the types
    assert statement("x", [("n", 10)]) == statement("x", [("n", "10")])
    assert a.startswith(b"quorumkeep backup v1\x00")


def test_keyset_and_package_parsing_is_strict(parties: Parties) -> None:
    document = parties.keyset.to_json()
    assert read_keyset(document) == parties.keyset
    assert parties.keyset.hash == read_keyset(document).hash
    assert len(parties.keyset.hash) == 32
    for bad in (
        {**document, "extra": 1},
        {**document, "epoch": True},
        {**document, "domains": list(reversed(document["domains"]))},
        {**document, "domains": [{**document["domains"][0], "public_key": "00" * 32}]},
        {**document, "domains": [document["domains"][0]] * (MAX_DOMAINS + 1)},
    ):
        with pytest.raises(BackupProtocolError):
            read_keyset(bad)
    package = parties.packages[0].to_json()
    assert PublicKeyPackageInfo.from_json(package) == parties.packages[0]
    for bad_key in ("01", "0", "x", "²"):
        shares = {bad_key: next(iter(package["verifying_shares"].values()))}
        with pytest.raises(BackupProtocolError):
            PublicKeyPackageInfo.from_json({**package, "verifying_shares": shares})


def test_shares_document_is_strict_and_never_echoes_values(parties: Parties) -> None:
    data = encode_shares(parties.shares)
    assert decode_shares(data) == parties.shares
    secret = parties.shares[0].signing_share.hex()
    big = (ORDER + 5).to_bytes(32, "little").hex()
    for document in (
        data.replace(secret.encode(), big.encode()),
        data.replace(b'"domain_id":1', b'"domain_id":0'),
        data.replace(b"quorumkeep key shares v1", b"other"),
        b"\xff",
        b"[]",
    ):
        with pytest.raises(BackupProtocolError) as excinfo:
            decode_shares(document)
        assert code_of(excinfo) == "malformed_request"
        assert secret not in str(excinfo.value) and big not in str(excinfo.value)


def test_every_error_code_has_a_4xx_or_5xx_status() -> None:
    assert all(400 <= status < 600 for status in ERROR_STATUS.values())
    for code in ERROR_STATUS:
        assert BackupProtocolError(code, "x").to_json() == {"error": {"code": code, "message": "x"}}
    with pytest.raises(ValueError):
        BackupProtocolError("no_such_code", "x")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, which=st.sampled_from(["response", "session", "push", "ack", "keyset"]))
def test_parsers_raise_only_the_protocol_error(value: Any, which: str) -> None:
    parse = {
        "response": BackupResponse.from_json,
        "session": RecoverySession.from_json,
        "push": RecoveryPush.from_json,
        "ack": RecoveryAck.from_json,
        "keyset": read_keyset,
    }[which]
    with pytest.raises(BackupProtocolError):
        parse(value)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(list(Hello.__dataclass_fields__)), st.text(max_size=70)))
def test_header_parser_raises_only_the_protocol_error(headers: dict[str, str]) -> None:
    named = {f"quorumkeep-{k.replace('_', '-')}": v for k, v in headers.items()}
    with pytest.raises(BackupProtocolError):
        Hello.from_headers(named)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 200_000,
        b"[" * 1_000 + b"]" * 1_000,
        b'{"a":' * 1_000 + b"1" + b"}" * 1_000,
        b"\xff",
        b'{"version": NaN}',
        b'{"version": 1, "version": 1}',
    ],
)
def test_json_bodies_are_refused_as_malformed_never_raised_through(body: bytes) -> None:
    with pytest.raises(BackupProtocolError) as excinfo:
        RecoveryPush.from_body(body)
    assert code_of(excinfo) == "malformed_request"
    with pytest.raises(BackupProtocolError) as excinfo:
        decode_shares(body)
    assert code_of(excinfo) == "malformed_request"


def test_documented_vector() -> None:
    """The hello of docs/backup-protocol.md §11, byte for byte."""
    service = Ed25519Signer(bytes(range(32)))
    ephemeral = KxKeyPair.from_seed(b"\x01" * 32)
    node_key = Ed25519Signer(b"\x02" * 32).public_key
    hello = make_hello(
        "backup",
        account="alice",
        node_tls_public_key=node_key,
        identity=service,
        ephemeral=ephemeral,
        now_ms=1_700_000_000_000,
        random_bytes=lambda n: b"\x07" * n,
    )
    assert hello.statement().hex() == "".join(VECTOR_STATEMENT.split())
    assert hello.signature.hex() == "".join(VECTOR_SIGNATURE.split())
    assert hello.to_headers()["quorumkeep-ephemeral-key"] == ephemeral.public_key.hex()
    # Transfer keys (§4): both ends derive the same key, per direction.
    node_ephemeral = KxKeyPair.from_seed(b"\x03" * 32)
    encryption = KxKeyPair.from_seed(b"\x04" * 32)
    backup = backup_key_node(node_ephemeral, ephemeral.public_key, encryption.public_key)
    assert backup == backup_key_service(ephemeral, encryption, node_ephemeral.public_key)
    assert backup.hex() == "e4967a1f79f109bd6d930dc59900e2cf8d085e25d5017dfd239b213d81e76c0a"
    recovery = recovery_key_service(ephemeral, encryption, node_ephemeral.public_key)
    assert recovery == recovery_key_node(
        node_ephemeral, ephemeral.public_key, encryption.public_key
    )
    assert recovery.hex() == "3834faa24b829c5f1af2c16b5352f087b2af1f038e65600650e19eb2c60d4525"
    keyset = Keyset(3, (DomainKey(0, "Ed25519", BASE),))
    assert keyset.canonical() == (
        b'{"domains":[{"domain_id":0,"public_key":"58666666666666666666666666666666'
        b'66666666666666666666666666666666","scheme":"Ed25519"}],"epoch":3}'
    )
    assert keyset.hash.hex() == "39e1b474b4264b4505039ce5eb87c47622899f48ba7e08a1c87d42cc2364833e"


VECTOR_STATEMENT = """
71756f72756d6b656570206261636b7570207631 00 00000005 68656c6c6f 00000007
00000007 707572706f7365 00000006 6261636b7570
00000007 6163636f756e74 00000005 616c696365
00000013 6e6f64655f746c735f7075626c69635f6b6579
00000020 8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394
0000001b 736572766963655f6964656e746974795f7075626c69635f6b6579
00000020 03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8
0000001c 736572766963655f657068656d6572616c5f7075626c69635f6b6579
00000020 ab2fca32898322c208fb2dab5048bd43c355c6430f588897cb574961cfa9806f
0000000c 74696d657374616d705f6d73 0000000d 31373030303030303030303030
00000005 6e6f6e6365 00000010 07070707070707070707070707070707
"""
VECTOR_SIGNATURE = """
b6d1157de0716b57cb65a886cd1d66f09d5addaa3e1c6acf19550eab5df44a35
d2b27787beaf4f64f4df486ce816e95767b23a2147c06f6c5bcabe4c0607cf0c
"""
