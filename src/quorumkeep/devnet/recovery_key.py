"""The devnet's emergency recovery key: made at set-up, voted by every operator.

``DIR/ers/`` holds the key files of ``quorumkeep ers keygen`` (the private key encrypted
under the devnet secret ``ers``). In production this key is made and kept off every machine
of the network — on paper or in an HSM — and only its public half reaches the operators.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quorumkeep.crypto.pve import RecoveryPublicKey
from quorumkeep.ers import keys
from quorumkeep.ledger.client import LedgerClient
from quorumkeep.operator.actions import vote_recovery_key

if TYPE_CHECKING:
    from quorumkeep.devnet.network import Devnet

ERS_DIR = "ers"
SECRET = "ers"


def key_dir(devnet_path: Path) -> Path:
    return Path(devnet_path) / ERS_DIR


def create_and_vote(
    devnet: Devnet, client: LedgerClient, accounts: Sequence[str], domain_id: int = 0
) -> RecoveryPublicKey:
    """Make the key (RSA-3072) in ``DIR/ers`` and have every operator vote it."""
    passphrase = devnet.secrets.get_or_create(SECRET)
    made = keys.generate(key_dir(devnet.path), passphrase)
    for account in accounts:
        vote_recovery_key(client, devnet.signer(account), domain_id, made.public)
    return made.public


def parts_complete(domain_id: int = 0) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    """A ``wait_contract`` predicate: the epoch in force has a part from every participant
    under the recovery key in force; returns that epoch's record (``record["epoch"]``)."""

    def check(state: dict[str, Any]) -> dict[str, Any] | None:
        protocol = state["protocol_state"]
        if protocol.get("state") != "Running":
            return None
        book = state.get("emergency_recovery")
        if book is None:
            return None
        key = book["keys"].get(str(domain_id))
        if key is None:
            return None
        accounts = {p["account"] for p in protocol["participants"]}
        for record in book["epochs"]:
            if record["domain_id"] != domain_id or record["epoch"] != protocol["epoch"]:
                continue
            done = {a for a, p in record["parts"].items() if p["fingerprint"] == key["fingerprint"]}
            if accounts <= done:
                return dict(record)
        return None

    return check
