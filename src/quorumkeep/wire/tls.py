"""TLS 1.3 between quorumkeep processes, where a peer is its ed25519 key and nothing else.

Every node (and later every backup service) has an ed25519 TLS key whose public half is
registered in the contract as ``tls_public_key``. Certificates here are only the envelope
OpenSSL needs to carry that key through a handshake: each one is self-signed, and a
connection is trusted when the certificate on the other side is one of the exact
certificates we were told to trust (it is its own trust anchor) *and* its key is the key the
contract names for that peer. Host names play no part: a network address proves nothing.

The TLS private key is never written in plaintext: it is stored as an encrypted PKCS#8 PEM,
which ``ssl.SSLContext.load_cert_chain(..., password=...)`` decrypts in memory.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PUBLIC_KEY_SIZE = 32

# A fixed window rather than "now .. now + N days": the certificate is a pure function of the
# key (ed25519 signatures are deterministic), a wrong clock on either side cannot make a
# handshake fail, and nothing ever expires. That is deliberate: a node's identity is replaced
# by a migration recorded in the contract (a new key), never by a certificate running out, and
# an expiry date would only add a way for a healthy network to stop. 9999-12-31 23:59:59 is
# RFC 5280's "no well-defined expiration date".
NOT_VALID_BEFORE = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
NOT_VALID_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
COMMON_NAME_PREFIX = "quorumkeep "
"""The certificate's CN is this prefix and the first 16 hex digits of the public key (for
people reading logs; nothing ever compares names)."""


class TLSError(Exception):
    """A certificate, key or TLS setup problem. ``code`` is stable; messages hold no secrets."""

    code = "tls_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class CertificateError(TLSError):
    """Not a parseable certificate, or not one carrying an ed25519 key."""

    code = "invalid_certificate"


class KeyMismatch(TLSError):
    """A certificate's key is not the key the contract names for that peer."""

    code = "tls_key_mismatch"


@dataclass(frozen=True)
class TLSCredentials:
    """Where a process's certificate and encrypted TLS key live, and the key's password.

    ``password`` decrypts the PKCS#8 PEM at ``private_key_path``; it never appears in a repr.
    """

    certificate_path: Path
    private_key_path: Path
    password: bytes = field(repr=False)
    public_key: bytes

    def server_context(
        self, trusted_certificates: Sequence[bytes] | None, *, require_client_cert: bool
    ) -> ssl.SSLContext:
        return server_context(
            self.certificate_path,
            self.private_key_path,
            self.password,
            trusted_certificates,
            require_client_cert,
        )

    def client_context(self, trusted_certificates: Sequence[bytes]) -> ssl.SSLContext:
        return client_context(
            self.certificate_path, self.private_key_path, self.password, trusted_certificates
        )


def raw_public_key(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def _serial_number(public_key: bytes) -> int:
    # 159 bits of a hash of the key: positive, at most 20 octets (RFC 5280 4.1.2.2), and
    # distinct per key so two certificates of different nodes never share issuer+serial.
    digest = hashlib.sha256(b"quorumkeep certificate serial\x00" + public_key).digest()
    return (int.from_bytes(digest[:20], "big") >> 1) | 1


def make_certificate(private_key: Ed25519PrivateKey) -> bytes:
    """A self-signed X.509 certificate (PEM) for ``private_key``; deterministic in the key."""
    if not isinstance(private_key, Ed25519PrivateKey):
        raise TLSError("TLS keys must be ed25519", code="unsupported_key")
    public = private_key.public_key()
    public_bytes = raw_public_key(private_key)
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, COMMON_NAME_PREFIX + public_bytes.hex()[:16])]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(_serial_number(public_bytes))
        .not_valid_before(NOT_VALID_BEFORE)
        .not_valid_after(NOT_VALID_AFTER)
        # Not a CA: it vouches for nothing but itself, even when listed as a trust anchor.
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    certificate = builder.sign(private_key, None)
    return certificate.public_bytes(serialization.Encoding.PEM)


def load_certificate(pem_or_der: bytes) -> x509.Certificate:
    """Parse a certificate given as PEM or DER; :class:`CertificateError` otherwise."""
    if not isinstance(pem_or_der, bytes | bytearray | memoryview):
        raise CertificateError("certificate must be bytes")
    data = bytes(pem_or_der)
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise CertificateError("not a parseable X.509 certificate (PEM or DER)") from None


def certificate_der(pem_or_der: bytes) -> bytes:
    return load_certificate(pem_or_der).public_bytes(serialization.Encoding.DER)


def certificate_pem(pem_or_der: bytes) -> bytes:
    return load_certificate(pem_or_der).public_bytes(serialization.Encoding.PEM)


def certificate_public_key(pem_or_der: bytes) -> bytes:
    """The raw 32-byte ed25519 public key a certificate carries; other key types are refused."""
    certificate = load_certificate(pem_or_der)
    try:
        public = certificate.public_key()
    except ValueError:
        raise CertificateError("certificate public key cannot be parsed") from None
    if not isinstance(public, Ed25519PublicKey):
        raise CertificateError(
            f"certificate key is {type(public).__name__}, quorumkeep only accepts ed25519",
            code="unsupported_key",
        )
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def pinned(expected_public_key: bytes, certificate: bytes) -> bytes:
    """Check that ``certificate`` carries exactly ``expected_public_key``; return its DER.

    This is what turns a certificate fetched from an address into a trusted one: the address
    proves nothing, the key registered in the contract does.
    """
    if not isinstance(expected_public_key, bytes) or len(expected_public_key) != PUBLIC_KEY_SIZE:
        raise TLSError("expected public key must be 32 bytes", code="invalid_public_key")
    actual = certificate_public_key(certificate)
    if actual != expected_public_key:
        raise KeyMismatch(
            f"certificate key {actual.hex()[:16]}… is not the expected "
            f"{expected_public_key.hex()[:16]}…"
        )
    return certificate_der(certificate)


def encrypted_private_key_pem(private_key: Ed25519PrivateKey, password: bytes) -> bytes:
    """PKCS#8 PEM encrypted under ``password`` (cryptography's best available scheme)."""
    if not isinstance(password, bytes) or not password:
        raise TLSError("password must be non-empty bytes", code="invalid_password")
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )


def load_encrypted_private_key(pem: bytes, password: bytes) -> Ed25519PrivateKey:
    """Decrypt what :func:`encrypted_private_key_pem` wrote; a wrong password is a TLSError."""
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError):
        raise TLSError(
            "cannot decrypt the TLS private key (wrong password or damaged file)",
            code="tls_key_unreadable",
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise TLSError("TLS key is not ed25519", code="unsupported_key")
    return key


def _cadata(trusted_certificates: Sequence[bytes]) -> str:
    return "".join(certificate_pem(c).decode("ascii") for c in trusted_certificates)


def _base_context(*, server_side: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    return context


def _load_chain(
    context: ssl.SSLContext, cert_path: Path | str, key_path: Path | str, password: bytes
) -> None:
    try:
        context.load_cert_chain(str(cert_path), str(key_path), password=password)
    except (ssl.SSLError, OSError):
        raise TLSError(
            "cannot load the TLS certificate and key (missing file, wrong password or a key "
            "that does not match the certificate)",
            code="tls_key_unreadable",
        ) from None


def server_context(
    cert_path: Path | str,
    key_path: Path | str,
    password: bytes,
    trusted_certificates: Sequence[bytes] | None,
    require_client_cert: bool,
) -> ssl.SSLContext:
    """A TLS 1.3 server context presenting our certificate.

    ``trusted_certificates=None``: no client certificate is asked for (a public HTTPS
    endpoint). Otherwise client certificates are verified against exactly those self-signed
    certificates; ``require_client_cert`` picks CERT_REQUIRED over CERT_OPTIONAL (optional lets
    a peer without a certificate learn ours, and nothing else — the caller must then close).
    An empty list trusts no client certificate at all.
    """
    context = _base_context(server_side=True)
    _load_chain(context, cert_path, key_path, password)
    if trusted_certificates is None:
        if require_client_cert:
            raise TLSError("requiring client certificates needs a trust list", code="tls_setup")
        context.verify_mode = ssl.CERT_NONE
        return context
    context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    if trusted_certificates:
        context.load_verify_locations(cadata=_cadata(trusted_certificates))
    return context


def client_context(
    cert_path: Path | str | None,
    key_path: Path | str | None,
    password: bytes | None,
    trusted_certificates: Sequence[bytes],
) -> ssl.SSLContext:
    """A TLS 1.3 client context that trusts exactly ``trusted_certificates``.

    Host names are not checked: peers are identified by key, so the caller still compares the
    server certificate's key with the one registered for the peer it meant to reach.
    """
    if not trusted_certificates:
        raise TLSError("a client context needs at least one trusted certificate", code="tls_setup")
    context = _base_context(server_side=False)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    if cert_path is not None or key_path is not None:
        if cert_path is None or key_path is None or password is None:
            raise TLSError(
                "a client certificate needs cert_path, key_path and password", code="tls_setup"
            )
        _load_chain(context, cert_path, key_path, password)
    context.load_verify_locations(cadata=_cadata(trusted_certificates))
    return context


def _unverified_client_context() -> ssl.SSLContext:
    context = _base_context(server_side=False)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def close_writer(writer: asyncio.StreamWriter, timeout: float = 1.0) -> None:
    """Close a stream politely (TLS close_notify) for at most ``timeout`` seconds, then abort
    its socket: a peer that never answers close_notify, or a cancellation while waiting, must
    not leave the socket open (asyncio's own TLS shutdown would wait 30 s)."""
    writer.close()
    closed = False
    try:
        async with asyncio.timeout(timeout):
            await writer.wait_closed()
        closed = True
    except Exception:
        pass
    finally:
        if not closed:
            writer.transport.abort()


async def fetch_certificate(host: str, port: int, timeout: float) -> bytes:
    """The DER certificate the TLS server at host:port presents, obtained *without* verifying it.

    The result is untrusted by construction: anyone can answer at an address. The caller must
    check it with :func:`pinned` against the ``tls_public_key`` registered in the contract
    before trusting it for anything.
    """
    try:
        async with asyncio.timeout(timeout):
            _reader, writer = await asyncio.open_connection(
                host, port, ssl=_unverified_client_context(), server_hostname=""
            )
    except TimeoutError:
        raise TLSError(
            f"no TLS handshake with {host}:{port} within {timeout}s", code="tls_unreachable"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(
            f"cannot fetch the certificate of {host}:{port}: {type(exc).__name__}",
            code="tls_unreachable",
        ) from None
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    finally:
        await close_writer(writer, timeout)
    if not der:
        raise CertificateError(f"{host}:{port} presented no certificate")
    return bytes(der)
