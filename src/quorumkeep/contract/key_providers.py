"""Key providers: registration by operators, and every node's record of who holds its key.

Rules (docs/contract.md §6.8):

- ``register_key_provider`` — the operator (full-access key) of a current or prospective
  participant, in any state; before ``init`` any account's operator (a genesis node deals
  its storage key before the contract exists), and ``init`` then drops the registrations
  of accounts it does not make participants. One provider per operator account, a second
  call replaces it. Its identity and encryption keys may not be another provider's. It
  carries an attestation (role ``key_provider``, report_data binding its identity and
  encryption keys) when the contract allow-lists key-provider measurements; the provider
  re-attests with ``submit_attestation`` like a backup service.
- ``deregister_key_provider`` — the operator; the event names every node whose deal names
  the provider, so their nodes re-deal (rotation) and anyone sees who must.
- ``record_key_providers`` — the node (its signer key as the contract lists it for the
  account: participant, candidate or migration destination) or its operator. The deal must
  have ``2 <= k <= m <= 32`` holders that are distinct registered providers, **none of the
  node's own operator**: each operator registers at most one provider, so no single
  operator can reach k pieces. The epoch must grow; the previous deal is replaced, and its
  providers delete their pieces when they see it.

Releases are decided by providers from :func:`release_standing`: the same rule here and in
every provider.
"""

from __future__ import annotations

from typing import Any

from quorumkeep.attest import Role
from quorumkeep.contract.access import require_initialized, require_operator
from quorumkeep.contract.args import check_fields, expect_account
from quorumkeep.contract.attestation import (
    key_provider_evidence,
    now_seconds,
    record_problem,
    store_record,
)
from quorumkeep.contract.context import CallContext, CallResult
from quorumkeep.contract.errors import (
    AttestationRequired,
    InvalidKeyProviders,
    KeyInUse,
    KeyProviderNotFound,
    NotParticipant,
    SignerKeyMismatch,
)
from quorumkeep.contract.events import (
    KEY_PROVIDER_DEREGISTERED,
    KEY_PROVIDER_REGISTERED,
    KEY_PROVIDERS_RECORDED,
    Event,
)
from quorumkeep.contract.key_provider_state import MAX_PROVIDERS, KeyProviderInfo, StorageDeal
from quorumkeep.contract.migration import current_accounts, prospective_accounts
from quorumkeep.contract.state import ContractState, Resharing


def listed_node_keys(state: ContractState, account: str) -> dict[bytes, str]:
    """The signer keys the contract lists for ``account``'s node, with the standing of each:
    ``participant`` (serving set, or the new set of a resharing), ``destination`` (of an
    open migration) or ``candidate``."""
    keys: dict[bytes, str] = {}
    migration = state.migrations.get(account)
    if migration is not None:
        keys[migration.destination_signer_public_key] = "destination"
    candidate = state.candidates.get(account)
    if candidate is not None:
        keys.setdefault(candidate.signer_public_key, "candidate")
    serving = state.serving()
    sets = [] if serving is None else [serving.parameters]
    if isinstance(state.protocol, Resharing):
        sets.append(state.protocol.parameters)
    for parameters in sets:
        info = parameters.get(account)
        if info is not None:
            keys[info.signer_public_key] = "participant"
    return keys


def release_standing(state: ContractState, account: str) -> tuple[StorageDeal | None, str | None]:
    """``(deal, standing)`` for a release to ``account``'s node: the current deal, and the
    standing of the node that recorded it (None when the contract no longer lists that
    signer key for the account, e.g. after a migration replaced the node)."""
    deal = state.key_providers.deals.get(account)
    if deal is None:
        return None, None
    return deal, listed_node_keys(state, account).get(deal.signer_public_key)


def register_key_provider(
    state: ContractState, ctx: CallContext, args: dict[str, Any]
) -> CallResult:
    evidence = args.get("attestation")
    info = KeyProviderInfo.from_json({k: v for k, v in args.items() if k != "attestation"}, "args")
    account = ctx.predecessor
    genesis = state.serving() is None
    if not genesis and account not in current_accounts(state) | prospective_accounts(state):
        raise NotParticipant(f"{account} is neither a participant nor a prospective one")
    require_operator(ctx)
    book = state.key_providers
    for other, existing in book.providers.items():
        if other == account:
            continue
        if existing.identity_public_key == info.identity_public_key:
            raise KeyInUse(f"the identity key is the key provider of {other}")
        if existing.encryption_public_key == info.encryption_public_key:
            raise KeyInUse(f"the encryption key is the key provider of {other}")
    replaced = account in book.providers
    if not replaced and len(book.providers) >= MAX_PROVIDERS:
        raise InvalidKeyProviders(f"the contract holds at most {MAX_PROVIDERS} key providers")
    record = key_provider_evidence(
        state, ctx, info.identity_public_key, info.encryption_public_key, evidence
    )
    book.providers[account] = info
    data = {"account": account, **info.to_json(), "replaced": replaced}
    events = [Event(KEY_PROVIDER_REGISTERED, data)]
    if record is not None:
        events.append(store_record(state, record))
    return CallResult(None, events)


def drop_non_participants(state: ContractState) -> list[Event]:
    """At ``init``: forget providers registered by accounts that did not become participants."""
    accounts = current_accounts(state)
    book = state.key_providers
    dropped = sorted(a for a in book.providers if a not in accounts)
    events = []
    for account in dropped:
        affected = book.holders_of(account)
        del book.providers[account]
        data = {"account": account, "affected": affected, "reason": "not a participant at init"}
        events.append(Event(KEY_PROVIDER_DEREGISTERED, data))
    return events


def deregister_key_provider(
    state: ContractState, ctx: CallContext, args: dict[str, Any]
) -> CallResult:
    check_fields(args, "args", [])
    require_initialized(state)
    require_operator(ctx)
    account = ctx.predecessor
    book = state.key_providers
    if account not in book.providers:
        raise KeyProviderNotFound(f"{account} has no registered key provider")
    affected = book.holders_of(account)
    del book.providers[account]
    data = {"account": account, "affected": affected, "reason": "deregistered"}
    return CallResult({"affected": affected}, [Event(KEY_PROVIDER_DEREGISTERED, data)])


def record_key_providers(
    state: ContractState, ctx: CallContext, args: dict[str, Any]
) -> CallResult:
    deal = StorageDeal.from_json(args, "args", recorded_height=ctx.block_height)
    require_initialized(state)
    account = ctx.predecessor
    listed = listed_node_keys(state, account)
    if ctx.full_access:
        if listed and deal.signer_public_key not in listed:
            raise SignerKeyMismatch(
                f"the contract lists another node for {account}: its signer key must record"
            )
    else:
        if ctx.signer_public_key not in listed:
            raise NotParticipant(
                f"{account} lists no participant, candidate or destination with this signer key"
            )
        if deal.signer_public_key != ctx.signer_public_key:
            raise SignerKeyMismatch("a node records its own deal, signed by its signer key")
    book = state.key_providers
    providers = deal.providers
    if len(set(providers)) != len(providers):
        raise InvalidKeyProviders("each provider may hold one piece only")
    if account in providers:
        raise InvalidKeyProviders(
            "the node's own operator may not hold a piece: one operator could then need fewer "
            "others to open the node's disk"
        )
    missing = [p for p in providers if p not in book.providers]
    if missing:
        raise InvalidKeyProviders(f"not registered key providers: {', '.join(missing)}")
    att = state.attestation
    if att is not None and att.allowed.get(Role.KEY_PROVIDER.value):
        for provider in providers:
            key = book.providers[provider].identity_public_key
            problem = record_problem(
                att, att.records.get(key), Role.KEY_PROVIDER.value, now_seconds(ctx)
            )
            if problem is not None:
                raise AttestationRequired(f"key provider {provider}: {problem}")
    previous = book.deals.get(account)
    if previous is not None and deal.epoch <= previous.epoch:
        raise InvalidKeyProviders(
            f"the epoch must grow: {account}'s deal is at epoch {previous.epoch}"
        )
    book.deals[account] = deal
    data = {
        "account": account,
        **deal.to_json(),
        "replaced_epoch": None if previous is None else previous.epoch,
        "released_by": [] if previous is None else sorted(set(previous.providers) - set(providers)),
    }
    return CallResult({"epoch": deal.epoch}, [Event(KEY_PROVIDERS_RECORDED, data)])


def key_providers_view(state: ContractState, args: dict[str, Any]) -> Any:
    """Every registered provider with the accounts whose current deal names it."""
    check_fields(args, "args", [])
    book = state.key_providers
    return {
        a: {**p.to_json(), "holds_for": book.holders_of(a)}
        for a, p in sorted(book.providers.items())
    }


def key_provider_deal_view(state: ContractState, args: dict[str, Any]) -> Any:
    """What a provider decides a deposit or a release on: the account's deal (or null), the
    standing of the node that recorded it (null: the contract no longer lists that signer
    key), and every signer key the contract lists for the account with its standing."""
    check_fields(args, "args", ["account"])
    account = expect_account(args["account"], "account")
    deal, standing = release_standing(state, account)
    return {
        "account": account,
        "deal": None if deal is None else deal.to_json(),
        "standing": standing,
        "node_keys": {k.hex(): s for k, s in sorted(listed_node_keys(state, account).items())},
    }
