"""Development quotes: the TDX quote's fields, signed by a local platform key (Ed25519).

For the devnet and machines without TEE hardware. A development quote proves only that
the holder of the development platform key vouched for these measurements; it is
accepted solely by a contract whose genesis allows development attestation and names
that key, and is shown as insecure wherever it is accepted.

Layout (408 bytes):

    offset  size  field
    0       8     magic "QKDEVQ\\x00\\x01" (version 1)
    8       48    MRTD
    56      48    RTMR0
    104     48    RTMR1
    152     48    RTMR2
    200     48    RTMR3
    248     64    report_data
    312     32    platform public key (Ed25519)
    344     64    Ed25519 signature (RFC 8032) over "quorumkeep/attest/dev-quote/v1" ‖ bytes 0..344
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from quorumkeep.attest.errors import (
    DevAttestationRefused,
    DevQuoteInvalid,
    QuoteMalformed,
)
from quorumkeep.attest.eventlog import (
    COMPOSE_HASH_EVENT,
    RuntimeEvent,
    replay_rtmr3,
    runtime_event,
)
from quorumkeep.attest.report import MR_SIZE, REPORT_DATA_SIZE, TCB_DEVELOPMENT, QuoteReport

KIND = "dev"
MAGIC = b"QKDEVQ\x00\x01"
_CONTEXT = b"quorumkeep/attest/dev-quote/v1"
_SIGNED_SIZE = len(MAGIC) + 5 * MR_SIZE + REPORT_DATA_SIZE + 32
QUOTE_SIZE = _SIGNED_SIZE + 64


@dataclass(frozen=True)
class DevMeasurements:
    """What a development platform reports for a guest (all 48-byte SHA-384 values)."""

    mrtd: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes


def make_dev_quote(platform_seed: bytes, m: DevMeasurements, report_data: bytes) -> bytes:
    """A development quote signed by the platform key whose 32-byte seed is given."""
    for name, value in vars(m).items():
        if len(value) != MR_SIZE:
            raise ValueError(f"{name} must be {MR_SIZE} bytes")
    if len(report_data) != REPORT_DATA_SIZE:
        raise ValueError(f"report_data must be {REPORT_DATA_SIZE} bytes")
    key = SigningKey(platform_seed)
    body = (
        MAGIC + m.mrtd + m.rtmr0 + m.rtmr1 + m.rtmr2 + m.rtmr3 + report_data + bytes(key.verify_key)
    )
    return body + key.sign(_CONTEXT + body).signature


def dev_platform_public_key(platform_seed: bytes) -> bytes:
    return bytes(SigningKey(platform_seed).verify_key)


def dev_guest(app: str) -> tuple[DevMeasurements, bytes, list[RuntimeEvent]]:
    """What the development platform reports for a guest running ``app``.

    MRTD and RTMR0–2 are fixed tags (there is no firmware or kernel to measure); the app
    is named by the compose hash event, SHA-256 of ``app`` (e.g. "quorumkeep-node 0.1.0"),
    which RTMR3 is replayed from, exactly as on a dstack guest. Returns the measurements,
    the app hash and the event log.
    """
    app_hash = hashlib.sha256(app.encode("utf-8")).digest()
    events = [runtime_event(COMPOSE_HASH_EVENT, app_hash)]
    mrtd, rtmr0, rtmr1, rtmr2 = (
        hashlib.sha384(f"quorumkeep/dev-platform/{n}".encode()).digest() for n in _MRS
    )
    return DevMeasurements(mrtd, rtmr0, rtmr1, rtmr2, replay_rtmr3(events)), app_hash, events


_MRS = ("mrtd", "rtmr0", "rtmr1", "rtmr2")


class DevVerifier:
    """``QuoteVerifier`` for development quotes; ``platform_public_key`` None refuses all."""

    kind = KIND

    def __init__(self, platform_public_key: bytes | None) -> None:
        self._platform_public_key = platform_public_key

    def verify(self, quote: bytes, collateral: str | None, now: int) -> QuoteReport:
        if self._platform_public_key is None:
            raise DevAttestationRefused(
                "development quotes are refused: development attestation is not allowed here"
            )
        if collateral is not None:
            raise QuoteMalformed("a development quote has no collateral")
        if len(quote) != QUOTE_SIZE or not quote.startswith(MAGIC):
            raise QuoteMalformed(f"a development quote is {QUOTE_SIZE} bytes starting {MAGIC!r}")
        body, signature = quote[:_SIGNED_SIZE], quote[_SIGNED_SIZE:]
        if body[-32:] != self._platform_public_key:
            raise DevQuoteInvalid("the quote is signed by another development platform key")
        try:
            VerifyKey(self._platform_public_key).verify(_CONTEXT + body, signature)
        except BadSignatureError as exc:
            raise DevQuoteInvalid("the development quote's signature does not verify") from exc
        mrs = [body[8 + i * MR_SIZE : 8 + (i + 1) * MR_SIZE] for i in range(5)]
        rd_start = 8 + 5 * MR_SIZE
        return QuoteReport(
            kind=KIND,
            tcb_status=TCB_DEVELOPMENT,
            advisory_ids=(),
            mrtd=mrs[0],
            rtmr0=mrs[1],
            rtmr1=mrs[2],
            rtmr2=mrs[3],
            rtmr3=mrs[4],
            report_data=body[rd_start : rd_start + REPORT_DATA_SIZE],
        )
