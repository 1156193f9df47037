"""The demo's ``attestation-upgrade`` scenario: operators roll out new node code by vote.

1. Every operator votes the new build's measurement onto the node allow-list (a
   threshold of votes adds it).
2. All nodes but one are restarted on the new build; each attests at start, so the
   contract's records show the new measurement.
3. The operators vote the old measurement off the list. The contract allows it: at least
   the threshold of participants are attested on the new one (a removal that would lock
   the network out is refused).
4. The running nodes see the laggard's attestation no longer matches the list and call
   ``verify_attestations``: the contract marks it and reshares the key to the others;
   peers refuse its mesh connections from the moment it is marked.
5. The same group key signs with the upgraded nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from quorumkeep.devnet import watch
from quorumkeep.devnet.attestation import NODE_APP, dev_measurement
from quorumkeep.devnet.errors import DevnetError
from quorumkeep.devnet.network import Devnet
from quorumkeep.ledger.errors import ContractCallFailed, LedgerError
from quorumkeep.node.config import load_config, write_config

SCENARIO = "attestation-upgrade"
UPGRADE_APP = f"{NODE_APP} (upgrade)"
TIMEOUT = 120.0


class StoryError(Exception):
    """A step failed; the message says which and where to look."""


def vote(devnet: Devnet, accounts: Sequence[str], action: str, app: str) -> list[str]:
    """Operators vote ``action`` of ``app``'s measurement until it applies; the voters."""
    args = {"action": action, "role": "node", "measurement": dev_measurement(app).to_json()}
    voters = []
    with devnet.client() as client:
        for account in accounts:
            try:
                outcome = client.call(devnet.signer(account), "vote_measurement", args)
            except ContractCallFailed as exc:
                raise StoryError(f"{account}'s vote to {action} was refused: {exc}") from None
            voters.append(account)
            if outcome.value.get("applied"):
                return voters
    raise StoryError(f"the vote to {action} {app!r} did not reach the threshold")


def set_build(devnet: Devnet, name: str, app: str) -> None:
    """Make node ``name`` run the build ``app`` from its next start (node.toml names it)."""
    record = devnet.process(name)
    assert record.directory is not None
    path = devnet.dir.resolve(record.directory) / "node.toml"
    config = load_config(path)
    assert config.attestation is not None
    write_config(
        config.model_copy(
            update={"attestation": config.attestation.model_copy(update={"app": app})}
        ),
        path,
    )


def allowed_build(devnet: Devnet) -> str:
    """The devnet's node build the contract's node allow-list admits (after this story:
    the upgrade), for nodes created later."""
    with devnet.client() as client:
        policy = client.view("attestation_policy")
    listed = [] if policy is None else policy["allowed_measurements"].get("node", [])
    return UPGRADE_APP if dev_measurement(UPGRADE_APP).to_json() in listed else NODE_APP


def upgrade(devnet: Devnet, name: str, app: str) -> None:
    """Restart node ``name`` on the build ``app`` (its node.toml names what it runs)."""
    devnet.stop(name)
    set_build(devnet, name, app)
    devnet.start(name)


def records_show(state: dict[str, Any], keys: Sequence[str], measurement_id: str) -> bool:
    records = {r["key"]: r for r in (state.get("attestation") or {}).get("records", [])}
    return all(records.get(k, {}).get("measurement_id") == measurement_id for k in keys)


def run(
    devnet: Devnet,
    step: Callable[[str], Any],
    current_node: Callable[[str], str],
) -> str:
    """The scenario up to the resharing; returns the laggard's account."""
    state = devnet.contract_state()
    members = watch.participants(state)
    accounts = [m["account"] for m in members]
    laggard = str(accounts[-1])
    upgraded = accounts[:-1]
    new_id = dev_measurement(UPGRADE_APP).measurement_id
    try:
        with step(
            f"operators vote the new build's measurement {new_id[:16]}… onto the list"
        ) as found:
            found(
                f"applied with the votes of {', '.join(vote(devnet, accounts, 'add', UPGRADE_APP))}"
            )
        with step(
            f"restart {', '.join(upgraded)} on the new build; {laggard} stays behind"
        ) as found:
            for account in upgraded:
                upgrade(devnet, current_node(account), UPGRADE_APP)
            keys = [m["tls_public_key"] for m in members if m["account"] in upgraded]
            with devnet.client() as client:
                devnet.wait_contract(
                    client,
                    lambda s: records_show(s, keys, new_id),
                    timeout=TIMEOUT,
                    what="the upgraded nodes' attestations",
                )
            found("each attested the new measurement at start")
        with step("operators vote the old measurement off the list") as found:
            found(
                f"applied with the votes of {', '.join(vote(devnet, accounts, 'remove', NODE_APP))}"
            )
        with step(f"nodes call verify_attestations: {laggard} is marked and reshared out") as found:
            with devnet.client() as client:
                epoch = devnet.wait_contract(
                    client,
                    lambda s: (
                        watch.protocol(s)["state"] == "Running"
                        and laggard not in {m["account"] for m in watch.participants(s)}
                        and watch.epoch(s)
                    ),
                    timeout=TIMEOUT,
                    what=f"the resharing without {laggard}",
                )
            found(f"Running at epoch {epoch} with {', '.join(upgraded)}")
    except (DevnetError, LedgerError) as exc:
        raise StoryError(str(exc)) from None
    return laggard
