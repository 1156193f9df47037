"""Assemble an emergency-recovery bundle from the ledger (`quorumkeep ers collect`).

The contract's ``recovery_parts`` view gives, for a (domain, epoch), the public key package
the parts were checked against and each part's digest and block height; each part itself is
the argument of the `submit_recovery_part` transaction in that block. The bundle takes every
part recorded under the recovery key in force, refuses any whose bytes do not hash to the
recorded digest, and says where it found each (``provenance``). The caller then verifies the
bundle offline (``quorumkeep.ers.bundle.verify``).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from quorumkeep.crypto import pve
from quorumkeep.crypto.errors import InvalidEncoding
from quorumkeep.ers.bundle import Bundle, BundlePart
from quorumkeep.ledger.client import LedgerClient
from quorumkeep.ledger.errors import LedgerError

SUBMIT_METHOD = "submit_recovery_part"


class CollectError(Exception):
    """Codes: ``unreadable`` (bad arguments), ``ledger`` (the ledger refused or is down),
    ``no_parts`` (nothing recorded), ``no_key`` (the domain has no recovery key),
    ``incomplete`` (fewer than t parts under the key in force), ``digest_mismatch``."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


def ledger_url_of(ledger: str | None, devnet: Path | None) -> str:
    if (ledger is None) == (devnet is None):
        raise CollectError("unreadable", "give exactly one of --ledger URL or --devnet DIR")
    if ledger is not None:
        return ledger
    from quorumkeep.devnet.errors import DevnetError
    from quorumkeep.devnet.network import Devnet

    assert devnet is not None
    try:
        return Devnet(devnet).ledger_url
    except DevnetError as exc:
        raise CollectError("unreadable", str(exc)) from None


def _find_part(
    client: LedgerClient, account: str, height: int, domain_id: int, epoch: int, digest: bytes
) -> tuple[bytes, str]:
    block = client.block(height)
    for included in block.get("transactions", []):
        tx = included["transaction"]
        if tx.get("signer_account") != account or included["outcome"]["status"] != "success":
            continue
        for action in tx.get("actions", []):
            call = action.get("function_call")
            if call is None or call.get("method") != SUBMIT_METHOD:
                continue
            args = call.get("args", {})
            if args.get("domain_id") != domain_id or args.get("epoch") != epoch:
                continue
            part = bytes.fromhex(args["part"])
            if hashlib.sha256(part).digest() == digest:
                return part, str(included["hash"])
    raise CollectError(
        "digest_mismatch",
        f"block {height} holds no part from {account} with the recorded digest {digest.hex()}",
    )


WAITABLE = frozenset({"no_parts", "incomplete", "no_key"})
"""Refusals that the nodes' next parts may lift: ``collect_waiting`` retries them."""


def collect_waiting(
    url: str, domain_id: int, epoch: int | None = None, *, wait: float = 0.0
) -> Bundle:
    """``collect``, retried every half second for up to ``wait`` seconds while the parts
    are not all in yet (the nodes make them right after a key change)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return collect(url, domain_id, epoch)
        except CollectError as exc:
            if exc.code not in WAITABLE or time.monotonic() >= deadline:
                raise
        time.sleep(0.5)


def collect(url: str, domain_id: int, epoch: int | None = None) -> Bundle:
    """The bundle for ``domain_id`` at ``epoch`` (default: the epoch in force)."""
    with LedgerClient(url) as client:
        try:
            status = client.status()
            args: dict[str, Any] = {"domain_id": domain_id}
            if epoch is not None:
                args["epoch"] = epoch
            view = client.view("recovery_parts", args)
            if view is None:
                raise CollectError(
                    "no_parts",
                    f"no recovery parts recorded for domain {domain_id}"
                    + ("" if epoch is None else f" epoch {epoch}"),
                )
            key_json = view["recovery_key"]
            if key_json is None:
                raise CollectError("no_key", f"domain {domain_id} has no recovery key")
            fingerprint = bytes.fromhex(key_json["fingerprint"])
            parts = []
            records = []
            for account, record in sorted(
                view["parts"].items(), key=lambda kv: kv[1]["participant_id"]
            ):
                if bytes.fromhex(record["fingerprint"]) != fingerprint:
                    continue  # made for a recovery key no longer in force
                digest = bytes.fromhex(record["digest"])
                part, tx_hash = _find_part(
                    client, account, record["block_height"], domain_id, view["epoch"], digest
                )
                parts.append(BundlePart(account, record["participant_id"], digest, part))
                records.append(
                    {"account": account, "block_height": record["block_height"], "tx_hash": tx_hash}
                )
        except LedgerError as exc:
            raise CollectError("ledger", f"{exc.code}: {exc.message}") from None
    if len(parts) < view["threshold"]:
        raise CollectError(
            "incomplete",
            f"{len(parts)} parts recorded under the recovery key in force, "
            f"{view['threshold']} needed",
        )
    try:
        recovery_key = pve.RecoveryPublicKey.from_der(bytes.fromhex(key_json["public_key"]))
    except InvalidEncoding as exc:
        raise CollectError("no_key", str(exc)) from None
    return Bundle(
        domain_id=domain_id,
        epoch=view["epoch"],
        group_public_key=bytes.fromhex(view["public_key"]),
        threshold=view["threshold"],
        verifying_shares={int(k): bytes.fromhex(v) for k, v in view["verifying_shares"].items()},
        keyset_hash=bytes.fromhex(view["keyset_hash"]),
        recovery_key=recovery_key,
        stated_fingerprint=fingerprint,
        parts=tuple(parts),
        provenance={
            "ledger": url,
            "chain_id": status["chain_id"],
            "view_height": status["height"],
            "records": records,
        },
    )


def contract_problems(url: str, bundle: Bundle) -> list[str]:
    """Why ``bundle`` is not the one the contract recorded (empty: it is): the epoch's
    package and every part's digest must be the contract's, under the key it recorded."""
    try:
        with LedgerClient(url) as client:
            view = client.view(
                "recovery_parts", {"domain_id": bundle.domain_id, "epoch": bundle.epoch}
            )
    except LedgerError as exc:
        raise CollectError("ledger", f"{exc.code}: {exc.message}") from None
    if view is None:
        return [f"the contract has no parts for domain {bundle.domain_id} epoch {bundle.epoch}"]
    problems = []
    shares = {int(k): bytes.fromhex(v) for k, v in view["verifying_shares"].items()}
    if (
        bytes.fromhex(view["public_key"]) != bundle.group_public_key
        or view["threshold"] != bundle.threshold
        or shares != dict(bundle.verifying_shares)
        or bytes.fromhex(view["keyset_hash"]) != bundle.keyset_hash
    ):
        problems.append("the public key package is not the one the contract recorded")
    for part in bundle.parts:
        record = view["parts"].get(part.account)
        if record is None:
            problems.append(f"the contract recorded no part from {part.account}")
        elif (
            bytes.fromhex(record["digest"]) != part.digest
            or record["participant_id"] != part.participant_id
            or bytes.fromhex(record["fingerprint"]) != bundle.stated_fingerprint
        ):
            problems.append(f"{part.account}'s part is not the one the contract recorded")
    return problems
