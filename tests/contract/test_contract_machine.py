"""Random call sequences by random callers never break the contract's invariants."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from contract_helpers import ed25519_sign, info, operator_key, signer_key, verifying_shares
from hypothesis import HealthCheck, settings
from hypothesis import event as note
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from quorumkeep.contract import EVENT_KINDS, CallContext, CallResult, Contract, ContractError
from quorumkeep.contract.key_packages import interpolated_key
from quorumkeep.contract.rules import min_resharing_threshold
from quorumkeep.crypto.derive import derivation_tweak
from quorumkeep.crypto.group import base_mul, scalar_add, scalar_from_int

POOL = ["alice", "bob", "carol", "dave", "erin"]
SECRETS = {base_mul(scalar_from_int(s)).hex(): scalar_from_int(s) for s in (1001, 1002, 1003)}
KEYS = sorted(SECRETS)

accounts = st.sampled_from(POOL)
key_kind = st.sampled_from(["operator", "node", "node", "stale"])
op_kind = st.sampled_from(["operator", "operator", "operator", "node"])
node_kind = st.sampled_from(["node", "node", "node", "operator", "stale"])
package_kind = st.sampled_from(["sound", "sound", "sound", "other", "missing", "extra", "skewed"])


def canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


@cache
def _sound_shares(public_key: str, ids: tuple[int, ...], threshold: int, salt: int) -> str:
    return json.dumps(verifying_shares(SECRETS[public_key], list(ids), threshold, salt))


def package(public_key: str, ids: list[int], threshold: int, kind: str) -> dict[str, str]:
    """Verifying shares of one of the test keys: sound, or broken in the way ``kind`` names.

    "other" is sound too but from another polynomial: it disagrees with a "sound" vote.
    """
    if not ids or not 1 <= threshold <= len(ids):
        return {"1": public_key}
    shares: dict[str, str] = json.loads(
        _sound_shares(public_key, tuple(ids), threshold, int(kind == "other"))
    )
    if kind == "missing":
        del shares[str(ids[-1])]
    elif kind == "extra":
        shares[str(max(ids) + 1)] = base_mul(scalar_from_int(7)).hex()
    elif kind == "skewed":
        shares[str(ids[0])] = base_mul(scalar_from_int(7)).hex()
    return shares


@cache
def _interpolates(public_key: str, shares: str, threshold: int) -> bool:
    pairs = tuple(sorted((int(i), bytes.fromhex(y)) for i, y in json.loads(shares).items()))
    return interpolated_key(pairs, threshold).hex() == public_key


class ContractMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.contract = Contract()
        self.height = 1
        self.generation: dict[str, int] = {a: 0 for a in POOL}
        self.id_owner: dict[int, str] = {}
        self.last_ids: dict[str, int] = {}
        self.pending_generation: dict[str, int] = {}
        self._snapshot: dict[str, Any] | None = None

    # --- helpers -----------------------------------------------------------------------

    @property
    def state(self) -> dict[str, Any]:
        """The state's JSON, rebuilt only after something may have changed it (read-only)."""
        if self._snapshot is None:
            self._snapshot = self.contract.to_json()
        return self._snapshot

    def protocol(self) -> dict[str, Any]:
        protocol: dict[str, Any] = self.state["protocol_state"]
        return protocol

    def serving(self) -> dict[str, Any] | None:
        p = self.protocol()
        return {
            "Running": p,
            "Initializing": p.get("running"),
            "Resharing": p.get("previous_running"),
        }.get(p["state"])

    def ctx(self, account: str, kind: str) -> CallContext:
        if kind == "operator":
            return CallContext(account, operator_key(account), True, self.height, 0)
        if kind == "stale":
            key = signer_key(account, self.generation[account] + 7)
        else:
            key = self.registered_signer(account) or signer_key(account, self.generation[account])
        return CallContext(account, key, False, self.height, 0)

    def registered_signer(self, account: str) -> bytes | None:
        p = self.protocol()
        sets = [p.get("participants")]
        if p["state"] == "Initializing":
            sets.append(p["running"]["participants"])
        if p["state"] == "Resharing":
            sets.append(p["previous_running"]["participants"])
        for members in sets:
            for m in members or []:
                if m["account"] == account:
                    return bytes.fromhex(m["signer_public_key"])
        return None

    def info(self, account: str) -> dict[str, Any]:
        serving = self.serving()
        for m in serving["participants"] if serving else []:
            if m["account"] == account:
                return dict(m)
        return info(account, self.generation[account])

    def attempt(self, ctx: CallContext, method: str, args: dict[str, Any]) -> CallResult | None:
        before = canonical(self.state)
        self._snapshot = None
        try:
            result = self.contract.call(ctx, method, args)
        except ContractError as error:
            assert error.code and "\n" not in error.message
            assert canonical(self.state) == before, f"rejected {method} changed the state"
            return None
        note(f"accepted {method}")
        json.dumps(result.value)
        for event in result.events:
            assert event.kind in EVENT_KINDS
            json.dumps(event.data)
        return result

    def members(self) -> list[str]:
        serving = self.serving()
        return [m["account"] for m in serving["participants"]] if serving else []

    # --- rules -------------------------------------------------------------------------

    @initialize(
        members=st.lists(accounts, min_size=2, max_size=4, unique=True),
        spread=st.integers(0, 10),
        start=st.integers(0, 9),
        with_domain=st.booleans(),
    )
    def start(self, members: list[str], spread: int, start: int, with_domain: bool) -> None:
        """Mostly start from a Running contract; sometimes from NotInitialized."""
        if start == 0:
            return
        threshold = 2 + spread % (len(members) - 1)
        args = {"participants": [info(a) for a in members], "threshold": threshold}
        assert self.attempt(self.ctx(members[0], "operator"), "init", args) is not None
        if with_domain:
            self.everyone_votes_add_domains(1)
            self.everyone_votes_pk(0, -1, -1)
            assert self.protocol()["domains"]

    @precondition(lambda m: m.protocol()["state"] == "Running")
    @rule(count=st.integers(1, 2), policy=st.sampled_from([None, 0, 1, 9]))
    def everyone_votes_add_domains(self, count: int, policy: int | None = 0) -> None:
        domain: dict[str, Any] = {"scheme": "Ed25519"}
        if policy is not None:
            domain["backups_required"] = policy
        for account in self.members():
            args = {"domains": [domain] * count}
            self.attempt(self.ctx(account, "operator"), "vote_add_domains", args)

    @precondition(lambda m: m.protocol()["state"] == "Initializing")
    @rule(
        index=st.integers(0, 3),
        dissenter=st.integers(0, 29),
        share_dissenter=st.integers(0, 29),
    )
    def everyone_votes_pk(self, index: int, dissenter: int, share_dissenter: int) -> None:
        kid = self._key_event(index, 0)
        ids, threshold = self.key_event_set()
        for i, account in enumerate(self.members()):
            public_key = KEYS[(kid["domain_id"] + (i == dissenter)) % len(KEYS)]
            kind = "other" if i == share_dissenter else "sound"
            args = {
                "key_event_id": kid,
                "public_key": public_key,
                "verifying_shares": package(public_key, ids, threshold, kind),
            }
            self.attempt(self.ctx(account, "node"), "vote_pk", args)

    @precondition(lambda m: m.protocol()["state"] == "Resharing")
    @rule(index=st.integers(0, 3), skip=st.integers(0, 9), share_dissenter=st.integers(0, 19))
    def everyone_votes_reshared(self, index: int, skip: int, share_dissenter: int) -> None:
        p = self.protocol()
        kid = self._key_event(index, 0)
        for i, m in enumerate(p.get("participants", []) if p["state"] == "Resharing" else []):
            if i != skip:
                kind = "other" if i == share_dissenter else "sound"
                args = {"key_event_id": kid, "verifying_shares": self.reshared_package(kid, kind)}
                self.attempt(self.ctx(m["account"], "node"), "vote_reshared", args)

    @precondition(lambda m: m.protocol()["state"] == "Running")
    @rule(
        members=st.lists(accounts, min_size=2, max_size=5, unique=True),
        spread=st.integers(0, 5),
        abstain=st.integers(0, 19),
    )
    def everyone_votes_new_parameters(self, members: list[str], spread: int, abstain: int) -> None:
        p = self.protocol()
        low = max(2, min_resharing_threshold(len(members)))
        threshold = low + spread % (len(members) - low + 1)
        args = {
            "epoch": p.get("next_epoch", 1),
            "proposal": {"participants": [self.info(a) for a in members], "threshold": threshold},
        }
        voters = [*self.members(), *(a for a in members if a not in self.members())]
        for i, account in enumerate(voters):
            if i != abstain:
                self.attempt(self.ctx(account, "operator"), "vote_new_parameters", args)

    @precondition(lambda m: m.protocol()["state"] == "NotInitialized")
    @rule(
        caller=accounts,
        members=st.lists(accounts, min_size=1, max_size=5, unique=True),
        threshold=st.integers(0, 5),
        full=st.booleans(),
    )
    def init(self, caller: str, members: list[str], threshold: int, full: bool) -> None:
        args = {"participants": [info(a) for a in members], "threshold": threshold}
        self.attempt(self.ctx(caller, "operator" if full else "node"), "init", args)

    @rule(
        caller=accounts,
        kind=op_kind,
        count=st.integers(1, 2),
        scheme=st.sampled_from(["Ed25519", "Ed25519", "Other"]),
    )
    def vote_add_domains(self, caller: str, kind: str, count: int, scheme: str) -> None:
        self.attempt(
            self.ctx(caller, kind), "vote_add_domains", {"domains": [{"scheme": scheme}] * count}
        )

    def key_event_set(self) -> tuple[list[int], int]:
        """Participant ids and threshold of the set a key event in progress shares among."""
        p = self.protocol()
        holders = {"Initializing": p.get("running"), "Resharing": p}.get(p["state"])
        if holders is None:
            return [], 0
        return [m["participant_id"] for m in holders["participants"]], int(holders["threshold"])

    def reshared_package(self, kid: dict[str, int], kind: str) -> dict[str, str]:
        """Verifying shares of the reshared domain's key for the new set."""
        p = self.protocol()
        domains = p.get("previous_running", {}).get("domains", [])
        keys = [d["public_key"] for d in domains if d["domain_id"] == kid["domain_id"]]
        ids, threshold = self.key_event_set()
        return package(keys[0] if keys else KEYS[0], ids, threshold, kind)

    def _key_event(self, index: int, bump: int) -> dict[str, int]:
        p = self.protocol()
        events = p.get("generating") or p.get("resharing") or []
        if not events:
            return {"domain_id": index, "epoch": 0, "attempt": 0}
        e = events[index % len(events)]
        return {"domain_id": e["domain_id"], "epoch": e["epoch"], "attempt": e["attempt"] + bump}

    @precondition(lambda m: m.protocol()["state"] == "Initializing")
    @rule(
        caller=accounts,
        kind=node_kind,
        index=st.integers(0, 3),
        bump=st.sampled_from([0, 0, 0, 1]),
        key=st.sampled_from([0, 0, 0, 1]),
        shares=package_kind,
    )
    def vote_pk(self, caller: str, kind: str, index: int, bump: int, key: int, shares: str) -> None:
        kid = self._key_event(index, bump)
        public_key = KEYS[(kid["domain_id"] + key) % len(KEYS)]
        ids, threshold = self.key_event_set()
        args = {
            "key_event_id": kid,
            "public_key": public_key,
            "verifying_shares": package(public_key, ids, threshold, shares),
        }
        self.attempt(self.ctx(caller, kind), "vote_pk", args)

    @precondition(lambda m: m.protocol()["state"] == "Resharing")
    @rule(
        caller=accounts,
        kind=node_kind,
        index=st.integers(0, 3),
        bump=st.sampled_from([0, 0, 1]),
        shares=package_kind,
    )
    def vote_reshared(self, caller: str, kind: str, index: int, bump: int, shares: str) -> None:
        kid = self._key_event(index, bump)
        args = {"key_event_id": kid, "verifying_shares": self.reshared_package(kid, shares)}
        self.attempt(self.ctx(caller, kind), "vote_reshared", args)

    @precondition(lambda m: m.protocol()["state"] in ("Initializing", "Resharing"))
    @rule(caller=accounts, kind=node_kind, index=st.integers(0, 3))
    def vote_abort_key_event(self, caller: str, kind: str, index: int) -> None:
        self.attempt(
            self.ctx(caller, kind),
            "vote_abort_key_event",
            {"key_event_id": self._key_event(index, 0)},
        )

    @precondition(lambda m: m.protocol()["state"] in ("Initializing", "Resharing"))
    @rule(
        caller=accounts,
        kind=op_kind,
        method=st.sampled_from(["vote_cancel_keygen", "vote_cancel_resharing"]),
    )
    def vote_cancel(self, caller: str, kind: str, method: str) -> None:
        self.attempt(self.ctx(caller, kind), method, {})

    @rule(
        caller=accounts,
        kind=op_kind,
        members=st.lists(accounts, min_size=1, max_size=5, unique=True),
        threshold=st.integers(1, 5),
        epoch_offset=st.sampled_from([0, 0, 0, 1]),
    )
    def vote_new_parameters(
        self, caller: str, kind: str, members: list[str], threshold: int, epoch_offset: int
    ) -> None:
        p = self.protocol()
        epoch = p.get("next_epoch", 1) + epoch_offset
        args = {
            "epoch": epoch,
            "proposal": {
                "participants": [self.info(a) for a in sorted(members)],
                "threshold": threshold,
            },
        }
        self.attempt(self.ctx(caller, kind), "vote_new_parameters", args)

    @rule(
        caller=accounts,
        size=st.sampled_from([16, 32, 100, 1232, 1233]),
        domain_id=st.integers(0, 1),
        path=st.sampled_from(["", "a", "m/44/0"]),
    )
    def sign(self, caller: str, size: int, domain_id: int, path: str) -> None:
        payload = bytes([size % 251]) * size
        args = {"payload": payload.hex(), "path": path, "domain_id": domain_id}
        self.attempt(CallContext(caller, bytes(32), True, self.height, 0), "sign", args)

    @precondition(lambda m: m.protocol()["state"] != "NotInitialized")
    @rule(
        caller=accounts,
        kind=st.sampled_from(["backup", "backup", "backup", "operator", "node", "other"]),
        keyset=st.sampled_from(["right", "right", "epoch", "hash"]),
    )
    def confirm_backup(self, caller: str, kind: str, keyset: str) -> None:
        registered = self.state["backup_services"].get(caller)
        if kind == "backup" and registered is not None:
            ctx = CallContext(
                caller, bytes.fromhex(registered["identity_public_key"]), False, self.height, 0
            )
        elif kind == "other":
            ctx = CallContext(caller, base_mul(scalar_from_int(77)), False, self.height, 0)
        else:
            ctx = self.ctx(caller, "operator" if kind == "operator" else "node")
        status = self.contract.view("backup_status", {})
        args = {
            "epoch": status["epoch"] + (keyset == "epoch"),
            "keyset_hash": status["keyset_hash"] if keyset != "hash" else "ab" * 32,
        }
        self.attempt(ctx, "confirm_backup", args)

    @precondition(lambda m: m.protocol()["state"] != "NotInitialized")
    @rule(
        caller=accounts,
        pick=st.booleans(),
        kind=node_kind,
        index=st.integers(0, 5),
        valid=st.booleans(),
    )
    def respond(self, caller: str, pick: bool, kind: str, index: int, valid: bool) -> None:
        members = self.members()
        if pick and members:
            caller = members[POOL.index(caller) % len(members)]
        pending = self.state["sign_requests"]
        if not pending:
            self.attempt(
                self.ctx(caller, kind), "respond", {"request_id": index, "signature": "00" * 64}
            )
            return
        request = pending[index % len(pending)]
        serving = self.serving()
        assert serving is not None
        domain = next(d for d in serving["domains"] if d["domain_id"] == request["domain_id"])
        secret = scalar_add(
            SECRETS[domain["public_key"]], derivation_tweak(request["account"], request["path"])
        )
        message = bytes.fromhex(request["payload"]) if valid else b"other"
        signature = ed25519_sign(secret, message)
        self.attempt(
            self.ctx(caller, kind),
            "respond",
            {"request_id": request["request_id"], "signature": signature.hex()},
        )

    @rule(blocks=st.integers(0, 700))
    def on_block(self, blocks: int) -> None:
        self.height += blocks
        before = {r["request_id"] for r in self.state["sign_requests"]}
        events = self.contract.on_block(self.height, 0)
        self._snapshot = None
        after = {r["request_id"] for r in self.state["sign_requests"]}
        assert {e.data["request_id"] for e in events} == before - after
        assert all(r["deadline_height"] > self.height for r in self.state["sign_requests"])

    @rule(caller=accounts, kind=op_kind, k=st.integers(1, 50))
    def register_backup_service(self, caller: str, kind: str, k: int) -> None:
        args = {
            "identity_public_key": base_mul(scalar_from_int(k)).hex(),
            "encryption_public_key": f"{k:02x}" * 32,
        }
        self.attempt(self.ctx(caller, kind), "register_backup_service", args)

    @precondition(lambda m: m.protocol()["state"] != "NotInitialized")
    @rule(
        caller=accounts,
        pick=st.booleans(),
        kind=op_kind,
        dest_kind=st.sampled_from(["fresh", "fresh", "other"]),
    )
    def start_node_migration(self, caller: str, pick: bool, kind: str, dest_kind: str) -> None:
        members = self.members()
        if pick and members:
            caller = members[POOL.index(caller) % len(members)]
        generation = self.generation[caller] + 1
        dest = (
            info(caller, generation)
            if dest_kind == "fresh"
            else info(POOL[(POOL.index(caller) + 1) % len(POOL)])
        )
        args = {
            "destination": {k: dest[k] for k in ("url", "web_url", "tls_public_key")},
            "destination_signer_public_key": dest["signer_public_key"],
        }
        if self.attempt(self.ctx(caller, kind), "start_node_migration", args) is not None:
            # last call wins: only a fresh destination moves the account to new test keys
            if dest_kind == "fresh":
                self.pending_generation[caller] = generation
            else:
                self.pending_generation.pop(caller, None)

    @precondition(lambda m: m.protocol()["state"] != "NotInitialized")
    @rule(
        caller=accounts,
        pick=st.sampled_from([True, True, False]),
        right_key=st.sampled_from([True, True, False]),
        right_keyset=st.sampled_from([True, True, False]),
    )
    def conclude_node_migration(
        self, caller: str, pick: bool, right_key: bool, right_keyset: bool
    ) -> None:
        open_migrations = sorted(self.state["migrations"])
        if pick and open_migrations:
            caller = open_migrations[POOL.index(caller) % len(open_migrations)]
        migration = self.state["migrations"].get(caller)
        key = (
            bytes.fromhex(migration["destination_signer_public_key"])
            if migration and right_key
            else signer_key(caller, 99)
        )
        serving = self.serving()
        epoch = int(serving["epoch"]) if serving else 0
        keyset: dict[str, Any] = {
            "epoch": epoch if right_keyset else epoch + 1,
            "domains": [
                {"domain_id": d["domain_id"], "public_key": d["public_key"]}
                for d in (serving or {}).get("domains", [])
            ],
        }
        ctx = CallContext(caller, key, False, self.height, 0)
        if self.attempt(ctx, "conclude_node_migration", {"keyset": keyset}) is not None:
            self.generation[caller] = self.pending_generation.pop(caller, self.generation[caller])

    @precondition(lambda m: m.protocol()["state"] != "NotInitialized")
    @rule(caller=accounts, pick=st.booleans(), kind=op_kind)
    def cancel_node_migration(self, caller: str, pick: bool, kind: str) -> None:
        open_migrations = sorted(self.state["migrations"])
        if pick and open_migrations:
            caller = open_migrations[POOL.index(caller) % len(open_migrations)]
        self.attempt(self.ctx(caller, kind), "cancel_node_migration", {})

    @rule(caller=accounts, kind=node_kind)
    def submit_participant_info(self, caller: str, kind: str) -> None:
        self.attempt(
            self.ctx(caller, kind), "submit_participant_info", info(caller, self.generation[caller])
        )

    # --- invariants --------------------------------------------------------------------

    @invariant()
    def json_round_trips(self) -> None:
        text = canonical(self.state)
        assert canonical(Contract.from_json(json.loads(text)).to_json()) == text

    @invariant()
    def participant_sets_are_sound(self) -> None:
        state = self.state
        p = state["protocol_state"]
        serving = self.serving()
        if serving is None:
            assert p == {"state": "NotInitialized"}
            return
        sets = [(serving["participants"], serving["threshold"], False)]
        if p["state"] == "Resharing":
            sets.append((p["participants"], p["threshold"], True))
        for members, threshold, resharing in sets:
            n = len(members)
            assert 2 <= threshold <= n
            if resharing:
                assert threshold >= min_resharing_threshold(n)
            for field in ("account", "participant_id", "tls_public_key", "signer_public_key"):
                values = [m[field] for m in members]
                assert len(set(values)) == n, f"duplicate {field}"
            ids = [m["participant_id"] for m in members]
            assert ids == sorted(ids) and ids[0] >= 1
            assert max(ids) < state["next_participant_id"]
            for m in members:
                # an id belongs to one account forever
                assert self.id_owner.setdefault(m["participant_id"], m["account"]) == m["account"]
        current = {m["account"]: m["participant_id"] for m in serving["participants"]}
        for account, pid in current.items():
            if account in self.last_ids:
                assert self.last_ids[account] == pid, "a staying participant changed id"
        self.last_ids = current

    @invariant()
    def every_domain_has_a_package_for_its_participants(self) -> None:
        """Each Running state's domains hold verifying shares for exactly its participants,
        and the lowest threshold of them interpolate to the domain's key."""
        p = self.protocol()
        running = {
            "Running": p,
            "Initializing": p.get("running"),
            "Resharing": p.get("previous_running"),
        }.get(p["state"])
        if running is None:
            return
        ids = {str(m["participant_id"]) for m in running["participants"]}
        for d in running["domains"]:
            assert set(d["verifying_shares"]) == ids, f"domain {d['domain_id']}'s shares"
            text = json.dumps(d["verifying_shares"], sort_keys=True)
            assert _interpolates(d["public_key"], text, running["threshold"])

    @invariant()
    def migrations_only_while_running(self) -> None:
        state = self.state
        migrations = state["migrations"]
        if state["protocol_state"]["state"] != "Running":
            assert migrations == {}
            return
        members = {m["account"]: m for m in state["protocol_state"]["participants"]}
        for account, m in migrations.items():
            assert m["account"] == account  # one migration per account, keyed by it
            assert members[account]["participant_id"] == m["participant_id"]
        tls = [m["destination"]["tls_public_key"] for m in migrations.values()]
        assert len(set(tls)) == len(tls)

    @invariant()
    def a_domain_signs_exactly_when_its_backup_policy_is_met(self) -> None:
        """Recomputed from the state's JSON alone: a serving participant's confirmation
        counts for a domain when it has the serving epoch and names the domain; the
        domain signs when the counted ones reach min(policy, n) (policy absent: n)."""
        serving = self.serving()
        if serving is None:
            return
        gate = self.state.get("backup_gate", {"policies": {}, "confirmations": {}, "waits": {}})
        members = [m["account"] for m in serving["participants"]]
        status = self.contract.view("backup_status", {})
        for d, view in zip(serving["domains"], status["domains"], strict=True):
            confirmed = [
                a
                for a in members
                if (c := gate["confirmations"].get(a)) is not None
                and c["epoch"] == serving["epoch"]
                and d["domain_id"] in c["domain_ids"]
            ]
            need = min(gate["policies"].get(str(d["domain_id"]), len(members)), len(members))
            assert view["confirmed"] == confirmed and view["required"] == need
            assert view["signing_allowed"] == (len(confirmed) >= need)
            # the recorded wait follows the gate: it is of the serving epoch and has
            # ended exactly when the domain signs
            wait = gate["waits"][str(d["domain_id"])]
            assert wait["epoch"] == serving["epoch"]
            assert (wait["opened_height"] is not None) == view["signing_allowed"]
            assert wait["since_height"] <= (wait["opened_height"] or wait["since_height"])
            refused = None
            try:
                Contract.from_json(self.state).call(
                    CallContext("zed", bytes(32), True, self.height, 0),
                    "sign",
                    {"payload": "00" * 32, "path": "", "domain_id": d["domain_id"]},
                )
            except ContractError as error:
                refused = error.code
            assert (refused == "KeyNotBackedUp") == (len(confirmed) < need), refused

    @invariant()
    def requests_are_ordered(self) -> None:
        state = self.state
        ids = [r["request_id"] for r in state["sign_requests"]]
        assert ids == sorted(set(ids)) and all(i < state["next_request_id"] for i in ids)


ContractMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestContractMachine = ContractMachine.TestCase
