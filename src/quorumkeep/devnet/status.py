"""What ``devnet status`` reports: processes, the contract's view of the network, and each
running node's own ``/status``."""

from __future__ import annotations

import time
from typing import Any

from quorumkeep.devnet import backups, watch
from quorumkeep.devnet.errors import DevnetError
from quorumkeep.devnet.network import Devnet
from quorumkeep.ledger.errors import LedgerError

NODE_STATUS_TIMEOUT = 2.0


def _attestations(devnet: Devnet) -> dict[str, Any]:
    """The contract's ``attestations`` view now: every entry in short, by attested key."""
    try:
        with devnet.client() as client:
            view = client.view("attestations", {"at": int(time.time())})
    except LedgerError as exc:
        return {"error": str(exc), "by_key": {}}
    entries = []
    for e in view.get("entries", []):
        record = e.get("record") or {}
        entries.append(
            {
                "role": e["role"],
                "account": e["account"],
                "what": e["what"],
                "key": e["key"],
                "status": e.get("status"),
                "kind": record.get("kind"),
                "tcb_status": record.get("tcb_status"),
                "measurement_id": record.get("measurement_id"),
                "expires_in": e.get("expires_in"),
                "marked": e.get("marked"),
            }
        )
    return {
        "enforced": view.get("enforced", False),
        "insecure_dev_attestation": view.get("insecure_dev_attestation", False),
        "entries": entries,
        "by_key": {e["key"]: e for e in entries if e["role"] == "node"},
    }


def gather(devnet: Devnet) -> dict[str, Any]:
    """A JSON-ready snapshot; unreachable parts are reported as ``{"error": ...}``."""
    record = devnet.record
    procs: list[dict[str, Any]] = [
        {
            "name": proc.name,
            "kind": proc.kind,
            "account": proc.account,
            "pid": proc.pid,
            "alive": devnet.alive(proc),
            "retired": proc.retired,
            "ports": dict(proc.ports),
            "log": str(devnet.dir.resolve(proc.log)),
        }
        for proc in record.processes.values()
    ]
    contract: dict[str, Any]
    try:
        state = devnet.contract_state()
    except (LedgerError, DevnetError) as exc:
        contract = {"error": str(exc)}
        state = None
    if state is not None:
        p = watch.protocol(state)
        running = watch.serving(state)
        nodes_by_key = {}
        for name in devnet.node_names():
            try:
                nodes_by_key[devnet.participant_info(name)["tls_public_key"]] = name
            except DevnetError:
                continue
        attested = _attestations(devnet)
        contract = {
            "attestation": attested,
            "protocol_state": p["state"],
            "epoch": watch.epoch(state),
            "threshold": watch.threshold(state),
            "participants": [
                {
                    "participant_id": m["participant_id"],
                    "account": m["account"],
                    "url": m["url"],
                    "node": nodes_by_key.get(m["tls_public_key"]),
                    "attestation": attested["by_key"].get(m["tls_public_key"]),
                }
                for m in watch.participants(state)
            ],
            "domains": [
                {"domain_id": d, "public_key": pk}
                for d, pk in sorted(watch.domain_keys(state).items())
            ],
            "pending_requests": len(state["sign_requests"]),
            "next_epoch": None if running is None else running.get("next_epoch"),
        }
        if p["state"] == "Resharing":
            contract["resharing_to"] = {
                "epoch": p["epoch"],
                "threshold": p["threshold"],
                "accounts": [m["account"] for m in p["participants"]],
            }
    nodes: dict[str, Any] = {}
    for entry in procs:
        if entry["kind"] != "node" or not entry["alive"]:
            continue
        try:
            nodes[entry["name"]] = devnet.node_get(
                entry["name"], "/status", timeout=NODE_STATUS_TIMEOUT
            )
        except DevnetError as exc:
            nodes[entry["name"]] = {"error": str(exc)}
    services: dict[str, Any] = {}
    for entry in procs:
        if entry["kind"] != backups.BACKUP_KIND or not entry["alive"]:
            continue
        try:
            seen = backups.status(devnet, entry["name"], timeout=NODE_STATUS_TIMEOUT)
        except DevnetError as exc:
            services[entry["name"]] = {"error": str(exc)}
            continue
        services[entry["name"]] = {
            key: seen.get(key)
            for key in (
                "account",
                "registered",
                "newest_epoch",
                "covers_current_keyset",
                "age_seconds",
                "contract_epoch",
                "migration",
                "last_fetch",
                "last_push",
                "last_verify",
                "attestation",
            )
        }
    return {
        "dir": str(devnet.path),
        "phase": record.phase,
        "ledger_url": record.ledger_url,
        "chain_id": record.chain_id,
        "processes": procs,
        "contract": contract,
        "nodes": nodes,
        "backups": services,
    }
