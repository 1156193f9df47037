"""quorumkeep.wire.tls: certificates as key envelopes, pinned trust, TLS 1.3 on real sockets."""

from __future__ import annotations

import asyncio
import datetime
import gc
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from node_helpers import run

from quorumkeep.node.identity import NodeIdentity
from quorumkeep.wire import tls

# A socket, transport or stream left unclosed is a failure here, not a silent warning: the
# warning raised in a finalizer becomes an unraisable-exception error (pyproject.toml).
pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    yield
    gc.collect()  # finalize objects in reference cycles while this test is still running


def _ecdsa_certificate() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not ed25519")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_certificate_is_deterministic_and_carries_the_key() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    pem = tls.make_certificate(key)
    assert pem == tls.make_certificate(key)  # a pure function of the key
    public = tls.raw_public_key(key)
    assert tls.certificate_public_key(pem) == public
    der = tls.certificate_der(pem)
    assert tls.certificate_public_key(der) == public
    cert = x509.load_pem_x509_certificate(pem)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "quorumkeep " + public.hex()[:16]
    assert cert.issuer == cert.subject
    assert cert.not_valid_after_utc.year == 9999
    assert 0 < cert.serial_number < 2**159
    other = tls.make_certificate(Ed25519PrivateKey.generate())
    assert x509.load_pem_x509_certificate(other).serial_number != cert.serial_number
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca is False


def test_non_ed25519_and_garbage_certificates_are_rejected() -> None:
    with pytest.raises(tls.CertificateError) as info:
        tls.certificate_public_key(_ecdsa_certificate())
    assert info.value.code == "unsupported_key"
    for garbage in (b"", b"not a certificate", b"-----BEGIN CERTIFICATE-----\nAAAA\n"):
        with pytest.raises(tls.CertificateError) as info:
            tls.certificate_public_key(garbage)
        assert info.value.code == "invalid_certificate"


def test_pinned_accepts_only_the_expected_key() -> None:
    key = Ed25519PrivateKey.generate()
    pem = tls.make_certificate(key)
    assert tls.pinned(tls.raw_public_key(key), pem) == tls.certificate_der(pem)
    with pytest.raises(tls.KeyMismatch) as info:
        tls.pinned(tls.raw_public_key(Ed25519PrivateKey.generate()), pem)
    assert info.value.code == "tls_key_mismatch"
    with pytest.raises(tls.TLSError):
        tls.pinned(b"short", pem)


def test_encrypted_private_key_pem_round_trip_and_no_plaintext(tmp_path: Path) -> None:
    seed = bytes(range(100, 132))
    key = Ed25519PrivateKey.from_private_bytes(seed)
    pem = tls.encrypted_private_key_pem(key, b"pw-123")
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    plain_der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert seed not in pem and seed.hex().encode() not in pem
    assert plain_der[-32:] not in pem
    loaded = tls.load_encrypted_private_key(pem, b"pw-123")
    assert tls.raw_public_key(loaded) == tls.raw_public_key(key)
    with pytest.raises(tls.TLSError) as info:
        tls.load_encrypted_private_key(pem, b"wrong")
    assert info.value.code == "tls_key_unreadable"
    with pytest.raises(tls.TLSError):
        tls.encrypted_private_key_pem(key, b"")
    # OpenSSL reads it with the password, and refuses it without the right one.
    (tmp_path / "k.pem").write_bytes(pem)
    (tmp_path / "c.pem").write_bytes(tls.make_certificate(key))
    tls.server_context(tmp_path / "c.pem", tmp_path / "k.pem", b"pw-123", None, False)
    with pytest.raises(tls.TLSError) as info:
        tls.server_context(tmp_path / "c.pem", tmp_path / "k.pem", b"nope", None, False)
    assert info.value.code == "tls_key_unreadable"


def test_contexts_are_tls13_only_and_identify_by_key(
    identity_factory: Callable[[str], NodeIdentity],
) -> None:
    a = identity_factory("a")
    ctx = a.tls.server_context([a.certificate], require_client_cert=False)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.verify_mode == ssl.CERT_OPTIONAL
    assert a.tls.server_context([], require_client_cert=True).verify_mode == ssl.CERT_REQUIRED
    assert a.tls.server_context(None, require_client_cert=False).verify_mode == ssl.CERT_NONE
    with pytest.raises(tls.TLSError):
        a.tls.server_context(None, require_client_cert=True)
    client = a.tls.client_context([a.certificate])
    assert client.check_hostname is False
    assert client.verify_mode == ssl.CERT_REQUIRED
    assert client.maximum_version == ssl.TLSVersion.TLSv1_3
    with pytest.raises(tls.TLSError):
        tls.client_context(None, None, None, [])
    with pytest.raises(tls.TLSError):
        tls.client_context(a.tls.certificate_path, None, None, [a.certificate])


async def _serve(context: ssl.SSLContext, seen: list[bytes | None]) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        seen.append(ssl_object.getpeercert(binary_form=True))
        writer.write(b"hello")
        await writer.drain()
        await tls.close_writer(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    return server, server.sockets[0].getsockname()[1]


async def _talk(port: int, context: ssl.SSLContext) -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=""
    )
    try:
        return await asyncio.wait_for(reader.read(5), 5)
    finally:
        await tls.close_writer(writer)


def test_mutual_tls_against_pinned_self_signed_certificates(
    identity_factory: Callable[[str], NodeIdentity],
) -> None:
    server, client, stranger = identity_factory("s"), identity_factory("c"), identity_factory("x")

    async def scenario() -> None:
        seen: list[bytes | None] = []
        srv, port = await _serve(
            server.tls.server_context([client.certificate], require_client_cert=True), seen
        )
        async with srv:
            # The trusted client gets through and the server sees its key.
            assert await _talk(port, client.tls.client_context([server.certificate])) == b"hello"
            assert seen[-1] is not None
            assert tls.certificate_public_key(seen[-1]) == client.tls_public_key
            # A certificate the server does not trust: TLS 1.3 lets the client finish its side,
            # but the server aborts and nothing is ever delivered to it.
            count = len(seen)
            try:
                data = await _talk(port, stranger.tls.client_context([server.certificate]))
            except (ssl.SSLError, ConnectionError):
                data = b""
            assert data == b""
            assert len(seen) == count
            # A client that trusts a different certificate refuses the server ("unknown ca").
            with pytest.raises(ssl.SSLCertVerificationError):
                await _talk(port, client.tls.client_context([stranger.certificate]))
            # TLS 1.2 is refused.
            old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            old.check_hostname = False
            old.verify_mode = ssl.CERT_NONE
            old.maximum_version = ssl.TLSVersion.TLSv1_2
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await _talk(port, old)

    run(scenario())


def test_fetch_certificate_then_pin(identity_factory: Callable[[str], NodeIdentity]) -> None:
    server, other = identity_factory("s"), identity_factory("o")

    async def scenario() -> None:
        seen: list[bytes | None] = []
        context = server.tls.server_context([], require_client_cert=False)
        srv, port = await _serve(context, seen)
        async with srv:
            der = await tls.fetch_certificate("127.0.0.1", port, timeout=5)
            assert tls.pinned(server.tls_public_key, der) == tls.certificate_der(server.certificate)
            with pytest.raises(tls.KeyMismatch):
                tls.pinned(other.tls_public_key, der)
            assert seen == [None]  # the fetcher presented no certificate
        with socket.socket() as probe:  # a port with nobody listening
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        with pytest.raises(tls.TLSError) as info:
            await tls.fetch_certificate("127.0.0.1", closed_port, timeout=2)
        assert info.value.code == "tls_unreachable"

    run(scenario())


def test_fetch_certificate_times_out_on_a_silent_server() -> None:
    async def scenario() -> None:
        finished = asyncio.Event()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # never answers the ClientHello; returns when the client leaves
            await tls.close_writer(writer)
            finished.set()

        srv = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        async with srv:
            with pytest.raises(tls.TLSError) as info:
                await tls.fetch_certificate("127.0.0.1", port, timeout=0.3)
            assert info.value.code == "tls_unreachable"
            async with asyncio.timeout(5):  # the client really hung up
                await finished.wait()

    run(scenario())
