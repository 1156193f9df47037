"""Development quotes for contract tests: a platform key and measurements per 'build'."""

from __future__ import annotations

import hashlib
from typing import Any

from contract_helpers import info, signer_key, tls_key

from quorumkeep.attest.binding import Role, report_data
from quorumkeep.attest.dev import DevMeasurements, dev_platform_public_key, make_dev_quote
from quorumkeep.attest.eventlog import replay_rtmr3, runtime_event
from quorumkeep.attest.evidence import Evidence, Measurement

PLATFORM_SEED = hashlib.sha256(b"test dev platform").digest()
PLATFORM_KEY = dev_platform_public_key(PLATFORM_SEED)


def mr(tag: str) -> bytes:
    return hashlib.sha384(tag.encode()).digest()


def measurement(build: str = "v1") -> Measurement:
    app = hashlib.sha256(f"compose/{build}".encode()).digest()
    return Measurement(mr("mrtd"), mr("rtmr0"), mr("rtmr1"), mr(f"rtmr2/{build}"), app)


def dev_attestation(
    role: Role, key_a: bytes, key_b: bytes, build: str = "v1", seed: bytes = PLATFORM_SEED
) -> dict[str, Any]:
    m = measurement(build)
    assert m.app_hash is not None
    events = (runtime_event("compose-hash", m.app_hash),)
    dm = DevMeasurements(m.mrtd, m.rtmr0, m.rtmr1, m.rtmr2, replay_rtmr3(list(events)))
    quote = make_dev_quote(seed, dm, report_data(role, key_a, key_b))
    return Evidence("dev", quote, None, events).to_json()


def node_attestation(account: str, generation: int = 0, build: str = "v1") -> dict[str, Any]:
    return dev_attestation(
        Role.NODE, tls_key(account, generation), signer_key(account, generation), build
    )


def genesis(dev: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "allowed_measurements": {"node": [measurement().to_json()]},
        "dev_platform_public_key": PLATFORM_KEY.hex() if dev else None,
        **extra,
    }


def info_with_attestation(account: str, build: str = "v1") -> dict[str, Any]:
    return {**info(account), "attestation": node_attestation(account, build=build)}
