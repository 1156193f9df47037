"""Where a node or backup service gets its quote: configuration and quote sources.

``[attestation]`` in node.toml / backup.toml::

    [attestation]
    kind = "dev"                      # "none" (default), "dev" or "tdx"
    dev_platform_key_file = "/path"   # dev: hex seed of the development platform key
    app = "quorumkeep-node 0.1.0"     # dev: what the guest runs (its compose hash)
    pccs_url = "https://…"            # tdx: where to fetch the collateral
    event_log_file = "/run/…"         # tdx: the guest's RTMR3 event log (JSON list)

A source turns 64 bytes of report_data into evidence JSON (docs/attestation.md): a dev
source signs a development quote with the platform key; a TDX source asks the kernel's
configfs-tsm interface for a quote over the report_data and fetches its collateral.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from quorumkeep.attest.dev import dev_guest, make_dev_quote
from quorumkeep.attest.eventlog import parse_event_log
from quorumkeep.attest.evidence import Evidence, Measurement

TSM_REPORT_DIR = Path("/sys/kernel/config/tsm/report")


class AttestationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["none", "dev", "tdx"] = "none"
    dev_platform_key_file: Path | None = None
    app: str | None = None
    pccs_url: str | None = None
    event_log_file: Path | None = None


class AttestationUnavailable(Exception):
    """No quote could be had (the message says why; it holds no secret)."""


class QuoteSource(Protocol):
    kind: str

    async def evidence(self, report_data: bytes) -> dict[str, Any]: ...


class DevQuoteSource:
    """Development quotes signed with the platform key read from a file (hex seed).

    The seed is the devnet's development platform key: it vouches for nothing real and
    is kept out of reprs and logs all the same.
    """

    kind = "dev"

    def __init__(self, seed: bytes, app: str) -> None:
        if len(seed) != 32:
            raise AttestationUnavailable("the development platform key is not 32 bytes")
        self._seed = seed
        self.app = app

    def __repr__(self) -> str:
        return f"DevQuoteSource(app={self.app!r})"

    @property
    def measurement(self) -> Measurement:
        m, app_hash, _ = dev_guest(self.app)
        return Measurement(m.mrtd, m.rtmr0, m.rtmr1, m.rtmr2, app_hash)

    async def evidence(self, report_data: bytes) -> dict[str, Any]:
        measurements, _, events = dev_guest(self.app)
        quote = make_dev_quote(self._seed, measurements, report_data)
        return Evidence("dev", quote, None, tuple(events)).to_json()


class TdxQuoteSource:
    """Intel TDX quotes from the Linux configfs-tsm interface, collateral from a PCCS.

    configfs-tsm (Documentation/ABI/testing/configfs-tsm): a directory made under
    ``/sys/kernel/config/tsm/report``; write the 64 bytes of report_data to ``inblob``;
    read the quote from ``outblob``. The kernel passes report_data to TDG.MR.REPORT as is.
    """

    kind = "tdx"

    def __init__(self, pccs_url: str, event_log_file: Path | None) -> None:
        self.pccs_url = pccs_url
        self.event_log_file = event_log_file

    def _quote(self, report_data: bytes) -> bytes:
        entry = TSM_REPORT_DIR / f"quorumkeep-{uuid.uuid4().hex}"
        try:
            entry.mkdir()
        except OSError as exc:
            raise AttestationUnavailable(f"configfs-tsm is not available: {exc}") from None
        try:
            (entry / "inblob").write_bytes(report_data)
            return (entry / "outblob").read_bytes()
        except OSError as exc:
            raise AttestationUnavailable(f"configfs-tsm refused the report: {exc}") from None
        finally:
            with contextlib.suppress(OSError):
                entry.rmdir()

    async def evidence(self, report_data: bytes) -> dict[str, Any]:
        import dcap_qvl

        quote = await asyncio.to_thread(self._quote, report_data)
        try:
            collateral = await dcap_qvl.get_collateral(self.pccs_url, quote)
        except (ValueError, RuntimeError) as exc:
            raise AttestationUnavailable(f"cannot fetch the collateral: {exc}") from None
        events: list[Any] = []
        if self.event_log_file is not None:
            try:
                events = json.loads(self.event_log_file.read_bytes())
            except (OSError, ValueError) as exc:
                raise AttestationUnavailable(f"cannot read the event log: {exc}") from None
        log = tuple(parse_event_log(events))
        return Evidence("tdx", quote, str(collateral.to_json()), log).to_json()


def quote_source(config: AttestationConfig, default_app: str) -> QuoteSource | None:
    """The configured source (None for ``kind = "none"``); AttestationUnavailable if the
    configuration cannot work (a missing key file, say)."""
    if config.kind == "none":
        return None
    if config.kind == "dev":
        if config.dev_platform_key_file is None:
            raise AttestationUnavailable("attestation.dev_platform_key_file is required for dev")
        try:
            text = config.dev_platform_key_file.read_text().strip()
            seed = bytes.fromhex(text)
        except (OSError, ValueError) as exc:
            raise AttestationUnavailable(
                f"cannot read the development platform key file: {type(exc).__name__}"
            ) from None
        return DevQuoteSource(seed, config.app or default_app)
    if config.pccs_url is None:
        raise AttestationUnavailable("attestation.pccs_url is required for tdx")
    return TdxQuoteSource(config.pccs_url, config.event_log_file)


def write_dev_platform_key(path: Path, seed: bytes) -> None:
    """The devnet's platform key file: hex seed, owner-only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(seed.hex() + "\n")
