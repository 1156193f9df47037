"""Builders for contract tests: accounts with deterministic keys, contexts, a driver."""

from __future__ import annotations

import hashlib
from typing import Any

from quorumkeep.contract import CallContext, CallResult, Contract
from quorumkeep.crypto.derive import derivation_tweak
from quorumkeep.crypto.group import (
    Scalar,
    base_mul,
    h2,
    identifier_scalar,
    polynomial_evaluate,
    scalar_add,
    scalar_from_int,
    scalar_mul,
    scalar_reduce,
)

HEIGHT = 10


def point(k: int) -> bytes:
    """k·G: a valid Ed25519 public key whose discrete log the test knows."""
    return base_mul(scalar_from_int(k))


def tls_key(account: str, generation: int = 0) -> bytes:
    return point(int.from_bytes(hashlib.sha256(f"tls/{account}/{generation}".encode()).digest()))


def signer_key(account: str, generation: int = 0) -> bytes:
    return point(int.from_bytes(hashlib.sha256(f"sig/{account}/{generation}".encode()).digest()))


def port(account: str, generation: int = 0) -> int:
    digest = hashlib.sha256(f"{account}/{generation}".encode()).digest()
    return 10000 + 2 * (int.from_bytes(digest[:2]) % 20000)


def info(account: str, generation: int = 0) -> dict[str, Any]:
    """Participant info JSON (without participant_id) for a node of ``account``."""
    p = port(account, generation)
    return {
        "account": account,
        "url": f"127.0.0.1:{p}",
        "web_url": f"https://127.0.0.1:{p + 1}",
        "tls_public_key": tls_key(account, generation).hex(),
        "signer_public_key": signer_key(account, generation).hex(),
    }


def operator_key(account: str) -> bytes:
    return point(int.from_bytes(hashlib.sha256(f"op/{account}".encode()).digest()))


def operator(account: str, height: int = HEIGHT) -> CallContext:
    """A transaction signed by a full-access key of ``account``."""
    return CallContext(account, operator_key(account), True, height, height * 1000)


def node(account: str, generation: int = 0, height: int = HEIGHT) -> CallContext:
    """A transaction signed by the node's signer key (a function-call key)."""
    return CallContext(account, signer_key(account, generation), False, height, height * 1000)


def backup_key(account: str, generation: int = 0) -> bytes:
    """The identity key of ``account``'s backup service."""
    return point(int.from_bytes(hashlib.sha256(f"bak/{account}/{generation}".encode()).digest()))


def backup(account: str, height: int = HEIGHT, generation: int = 0) -> CallContext:
    """A transaction signed by the backup service's identity key (a function-call key)."""
    return CallContext(account, backup_key(account, generation), False, height, height * 1000)


def backup_registration(account: str, generation: int = 0) -> dict[str, str]:
    return {
        "identity_public_key": backup_key(account, generation).hex(),
        "encryption_public_key": hashlib.sha256(f"enc/{account}/{generation}".encode()).hexdigest(),
    }


def user(account: str, height: int = HEIGHT) -> CallContext:
    return CallContext(account, point(99), True, height, height * 1000)


def domain_secret(domain_id: int) -> Scalar:
    return scalar_from_int(1_000_003 + domain_id)


def polynomial(secret: Scalar, threshold: int, salt: int = 0) -> list[Scalar]:
    """A degree t−1 polynomial with constant term ``secret``; ``salt`` picks another one."""
    rest = [
        scalar_reduce(hashlib.sha512(f"coefficient/{salt}/{k}".encode() + secret).digest())
        for k in range(1, threshold)
    ]
    return [secret, *rest]


def verifying_shares(
    secret: Scalar, ids: list[int], threshold: int, salt: int = 0
) -> dict[str, str]:
    """``{"<id>": hex}`` of f(id)·G: a sound package for ``secret``·G over ``ids``."""
    coefficients = polynomial(secret, threshold, salt)
    return {
        str(i): base_mul(polynomial_evaluate(identifier_scalar(i), coefficients)).hex() for i in ids
    }


def ed25519_sign(secret: Scalar, message: bytes) -> bytes:
    """RFC 8032 signing with a raw scalar (deterministic nonce from the secret and message)."""
    public = base_mul(secret)
    r = scalar_reduce(hashlib.sha512(b"test nonce" + secret + message).digest())
    big_r = base_mul(r)
    c = h2(big_r + public + message)
    return big_r + scalar_add(r, scalar_mul(c, secret))


def sign_derived(domain_id: int, account: str, path: str, message: bytes) -> bytes:
    """A signature under the key derived from domain ``domain_id``'s test key."""
    return ed25519_sign(
        scalar_add(domain_secret(domain_id), derivation_tweak(account, path)), message
    )


class Driver:
    """Drives a contract through common flows with the test keys above."""

    def __init__(self, accounts: list[str], threshold: int) -> None:
        self.contract = Contract()
        self.generation: dict[str, int] = {a: 0 for a in accounts}
        self.call(
            operator(accounts[0]),
            "init",
            {"participants": [info(a) for a in accounts], "threshold": threshold},
        )

    def call(self, ctx: CallContext, method: str, args: dict[str, Any]) -> CallResult:
        return self.contract.call(ctx, method, args)

    def view(self, method: str, args: dict[str, Any] | None = None) -> Any:
        return self.contract.view(method, args or {})

    @property
    def state(self) -> dict[str, Any]:
        return self.contract.to_json()

    def node(self, account: str, height: int = HEIGHT) -> CallContext:
        return node(account, self.generation.get(account, 0), height)

    def running_accounts(self) -> list[str]:
        return [p["account"] for p in self.view("participants")["participants"]]

    def running_shares(self, domain_id: int, salt: int = 0) -> dict[str, str]:
        """A sound package of domain ``domain_id``'s test key for the serving set."""
        view = self.view("participants")
        ids = [p["participant_id"] for p in view["participants"]]
        return verifying_shares(domain_secret(domain_id), ids, view["threshold"], salt)

    def next_shares(self, domain_id: int, salt: int = 1) -> dict[str, str]:
        """A sound package of domain ``domain_id``'s test key for the set being reshared to."""
        following = self.view("participants")["next"]
        ids = [p["participant_id"] for p in following["participants"]]
        return verifying_shares(domain_secret(domain_id), ids, following["threshold"], salt)

    def add_domain(self, backups_required: int | None = None, *, confirm: bool = True) -> int:
        """Vote a new Ed25519 domain with every participant and generate its key; with
        ``confirm`` every participant's backup service then confirms the new keyset (so
        the domain signs whatever its backup policy)."""
        accounts = self.running_accounts()
        domain: dict[str, Any] = {"scheme": "Ed25519"}
        if backups_required is not None:
            domain["backups_required"] = backups_required
        for a in accounts:
            self.call(operator(a), "vote_add_domains", {"domains": [domain]})
        generating = self.state["protocol_state"]["generating"]
        for event in generating:
            domain_id = event["domain_id"]
            kid = {"domain_id": domain_id, "epoch": event["epoch"], "attempt": event["attempt"]}
            args = {
                "key_event_id": kid,
                "public_key": base_mul(domain_secret(domain_id)).hex(),
                "verifying_shares": self.running_shares(domain_id),
            }
            for a in accounts:
                self.call(self.node(a), "vote_pk", args)
        if confirm:
            self.confirm_backups()
        return int(generating[-1]["domain_id"])

    def keyset_hash(self) -> str:
        return str(self.view("backup_status")["keyset_hash"])

    def register_backup(self, account: str, generation: int = 0) -> None:
        self.call(
            operator(account), "register_backup_service", backup_registration(account, generation)
        )

    def confirm_backups(self, accounts: list[str] | None = None) -> None:
        """Each account's backup service (registered here if it has none) confirms the
        serving keyset."""
        status = self.view("backup_status")
        for a in self.running_accounts() if accounts is None else accounts:
            if self.view("backup_service_info", {"account": a}) is None:
                self.register_backup(a)
            if status["operators"][a]["current"]:
                continue
            self.call(
                backup(a),
                "confirm_backup",
                {"epoch": status["epoch"], "keyset_hash": status["keyset_hash"]},
            )

    def propose(self, accounts: list[str], threshold: int, voters: list[str]) -> None:
        epoch = self.state["protocol_state"]["next_epoch"]
        current = {p["account"]: p for p in self.view("participants")["participants"]}
        members = [current.get(a, info(a, self.generation.get(a, 0))) for a in accounts]
        for v in voters:
            if self.contract.protocol_state != "Running":
                break  # enough votes: the resharing started
            self.call(
                operator(v),
                "vote_new_parameters",
                {"epoch": epoch, "proposal": {"participants": members, "threshold": threshold}},
            )

    def reshare(self, accounts: list[str], threshold: int) -> None:
        """A complete resharing to ``accounts``: every old and new account votes, all confirm
        (a resharing already started is completed)."""
        if self.contract.protocol_state == "Running":
            old = self.running_accounts()
            voters = old + [a for a in accounts if a not in old]
            self.propose(accounts, threshold, voters)
        while self.state["protocol_state"]["state"] == "Resharing":
            event = next(
                e for e in self.state["protocol_state"]["resharing"] if e["public_key"] is None
            )
            kid = {k: event[k] for k in ("domain_id", "epoch", "attempt")}
            args = {"key_event_id": kid, "verifying_shares": self.next_shares(kid["domain_id"])}
            for a in accounts:
                self.call(self.node(a), "vote_reshared", args)

    def migrate(self, account: str) -> dict[str, Any]:
        """Start a migration of ``account``'s node to its next generation of keys."""
        self.generation[account] = self.generation.get(account, 0) + 1
        dest = info(account, self.generation[account])
        return {
            "destination": {k: dest[k] for k in ("url", "web_url", "tls_public_key")},
            "destination_signer_public_key": dest["signer_public_key"],
        }
