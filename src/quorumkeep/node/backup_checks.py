"""The checks of a ``/backup/...`` request: who sent it and what the contract says of it.

A hello or a push is checked without I/O first (addressee, timestamp, signature against the
registered key cached from the contract's events, nonce), and only then is the registration
confirmed on the node's own ledger client (docs/backup-protocol.md §6 and §7 list the checks
in order, §8 the replay rules). The contract's views
the endpoints read (registration, keyset, participants, open migration, public key packages,
attestations) come back typed: a view that cannot be read or is malformed is
``contract_unavailable``; an answer that refuses the request raises its own code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from quorumkeep.node.backup_registration import (
    Registration,
    RegistrationCache,
    registration_from_json,
)
from quorumkeep.node.calls import ViewReader
from quorumkeep.wire.backup import (
    BackupProtocolError,
    Hello,
    Keyset,
    PublicKeyPackageInfo,
    RecoveryPush,
    ReplayGuard,
    check_timestamp,
    read_keyset,
)


def backup_service_attestation_problem(view: Any, identity_public_key: bytes) -> str | None:
    """Why the contract's ``attestations`` view forbids sending shares to this service."""
    if not isinstance(view, Mapping) or not view.get("require_tee_backup_services"):
        return None
    for entry in view.get("entries", []):
        if (
            isinstance(entry, Mapping)
            and entry.get("role") == "backup_service"
            and entry.get("key") == identity_public_key.hex()
        ):
            status = entry.get("status")
            if status == "valid":
                return None
            return f"the contract requires TEE backup services; this one's attestation: {status}"
    return "the contract requires TEE backup services; this one has no attestation"


class BackupChecks:
    """One node's checks (its account and TLS key): the caller's authentication, with the
    replay table and the registration cache, and the contract reads behind them."""

    def __init__(
        self,
        account: str,
        tls_public_key: bytes,
        read_view: ViewReader,
        clock: Callable[[], float],
        registrations: RegistrationCache,
        replays: ReplayGuard,
    ) -> None:
        self.account = account
        self.tls_public_key = tls_public_key
        self.read_view = read_view
        self.clock = clock
        self.registrations = registrations
        self.replays = replays

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- contract reads

    async def _view(self, method: str, args: Mapping[str, Any]) -> Any:
        try:
            return await self.read_view(method, args)
        except BackupProtocolError:
            raise
        except Exception as exc:
            code = getattr(exc, "code", type(exc).__name__)
            raise BackupProtocolError(
                "contract_unavailable", f"cannot read the contract's {method} view ({code})"
            ) from None

    async def _registered(self) -> Registration:
        """The registration as the contract says now (the node's own client: only called
        once a request's signature verified)."""
        info = await self._view("backup_service_info", {"account": self.account})
        registration = registration_from_json(info)
        if registration is None:
            raise BackupProtocolError(
                "unregistered_caller",
                f"no backup service is registered in the contract for {self.account}",
            )
        return registration

    async def keyset(self) -> Keyset:
        value = await self._view("keyset", {})
        try:
            return read_keyset(value, "contract keyset")
        except BackupProtocolError:
            raise BackupProtocolError(
                "contract_unavailable", "the keyset view is malformed"
            ) from None

    async def my_participant_id(self) -> int:
        value = await self._view("participants", {})
        members = value.get("participants") if isinstance(value, Mapping) else None
        if not isinstance(members, list):
            raise BackupProtocolError("contract_unavailable", "the participants view is malformed")
        for member in members:
            if isinstance(member, Mapping) and member.get("account") == self.account:
                if member.get("tls_public_key") != self.tls_public_key.hex():
                    break
                pid = member.get("participant_id")
                if isinstance(pid, int) and not isinstance(pid, bool) and pid >= 1:
                    return pid
        raise BackupProtocolError(
            "not_participant",
            f"the contract does not list this node's TLS key for {self.account}",
        )

    async def open_migration(self) -> tuple[int, int]:
        """(participant id, started height) of the migration to this node, if one is open."""
        value = await self._view("migration_info", {"account": self.account})
        if isinstance(value, Mapping):
            destination = value.get("destination")
            pid = value.get("participant_id")
            height = value.get("started_height")
            if (
                isinstance(destination, Mapping)
                and destination.get("tls_public_key") == self.tls_public_key.hex()
                and isinstance(pid, int)
                and isinstance(height, int)
            ):
                return pid, height
        raise BackupProtocolError(
            "no_open_migration",
            f"no migration of {self.account} to this node's TLS key is open",
        )

    async def packages(self, keyset: Keyset) -> dict[int, PublicKeyPackageInfo]:
        packages = {}
        for domain_id in keyset.domain_ids:
            value = await self._view("public_key_package", {"domain_id": domain_id})
            try:
                packages[domain_id] = PublicKeyPackageInfo.from_json(value)
            except BackupProtocolError:
                raise BackupProtocolError(
                    "contract_unavailable", f"public_key_package of domain {domain_id} malformed"
                ) from None
        return packages

    async def check_attested(self, registered: Registration) -> None:
        """When the contract requires TEE backup services, shares go only to a service
        whose attestation is valid now (``attestations`` view)."""
        view = await self._view("attestations", {"at": int(self.clock())})
        problem = backup_service_attestation_problem(view, registered.identity_public_key)
        if problem is not None:
            raise BackupProtocolError("service_not_attested", problem)

    # -- the caller

    async def authenticate_hello(
        self, headers: Mapping[str, str], purpose: str
    ) -> tuple[Hello, Registration]:
        """A hello of ``purpose`` from the registered backup service, checked (§6)."""
        hello = Hello.from_headers(headers)
        if hello.purpose != purpose:
            raise BackupProtocolError("malformed_request", f"this endpoint takes a {purpose} hello")
        registered, _ = await self.authenticate(hello)
        return hello, registered

    async def authenticate(self, request: Hello | RecoveryPush) -> tuple[Registration, int]:
        """Everything checked without I/O first (docs/backup-protocol.md §8): the signature
        against the registered key cached from the contract's events; only then is the
        registration confirmed on the node's own ledger client. Returns the registration
        and the time (ms) the request was checked at."""
        self._check_addressee(request.account, request.node_tls_public_key)
        now = self.now_ms()
        check_timestamp(request.timestamp_ms, now)
        cached = await self.registrations.lookup(request.service_identity_public_key)
        request.verify(cached.identity_public_key)
        self.replays.check_and_record(request.nonce, request.timestamp_ms, now)
        registered = await self._registered()
        self._check_caller(registered, request.service_identity_public_key)
        return registered, now

    def _check_addressee(self, account: str, node_tls_public_key: bytes) -> None:
        if node_tls_public_key != self.tls_public_key:
            raise BackupProtocolError(
                "wrong_node", "the request is addressed to another node's TLS key"
            )
        if account != self.account:
            raise BackupProtocolError(
                "wrong_node", f"this node serves account {self.account}, not {account}"
            )

    def _check_caller(self, registered: Registration, identity_public_key: bytes) -> None:
        if identity_public_key != registered.identity_public_key:
            raise BackupProtocolError(
                "unregistered_caller",
                f"the caller's key is not the backup service registered for {self.account}",
            )
