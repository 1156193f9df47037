"""Sign requests: anyone asks, the participants answer, the contract checks the answer.

A request is signed under the domain key derived for (requesting account, path), so each
account's keys are its own. The contract verifies every response as plain RFC 8032
Ed25519 before accepting it: a wrong signature never reaches the requester as an answer.
"""

from __future__ import annotations

from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from quorumkeep.contract.access import require_initialized, require_node_key, require_participant
from quorumkeep.contract.args import check_fields, expect_hex, expect_int, expect_str
from quorumkeep.contract.backup_gate import signing_problem
from quorumkeep.contract.context import CallContext, CallResult
from quorumkeep.contract.errors import (
    DomainNotFound,
    InvalidArguments,
    InvalidSignature,
    KeyNotBackedUp,
    PayloadSize,
    RequestNotFound,
    TooManyRequests,
)
from quorumkeep.contract.events import SIGN_FAILED, SIGN_REQUESTED, SIGN_RESPONDED, Event
from quorumkeep.contract.state import (
    PATH_MAX,
    PAYLOAD_MAX,
    PAYLOAD_MIN,
    ContractState,
    Initializing,
    SignRequest,
)
from quorumkeep.crypto.derive import derive_public_key
from quorumkeep.encoding.fields import decode_hex


def _parse_payload(value: Any) -> bytes:
    if not isinstance(value, str):
        raise InvalidArguments("payload must be a lowercase hex string")
    if len(value) > 2 * PAYLOAD_MAX + 1:  # refuse before decoding anything large
        raise PayloadSize(f"payload must be {PAYLOAD_MIN} to {PAYLOAD_MAX} bytes")
    try:
        payload = decode_hex(value)
    except ValueError:
        raise InvalidArguments(
            "payload must be lowercase hex with an even number of digits"
        ) from None
    if not PAYLOAD_MIN <= len(payload) <= PAYLOAD_MAX:
        raise PayloadSize(
            f"payload must be {PAYLOAD_MIN} to {PAYLOAD_MAX} bytes, got {len(payload)}"
        )
    return payload


def _parse_path(value: Any) -> str:
    path = expect_str(value, "path", PATH_MAX)
    try:
        path.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate from a JSON \ud800 escape
        raise InvalidArguments("path must be valid Unicode text") from exc
    return path


def sign(state: ContractState, ctx: CallContext, args: dict[str, Any]) -> CallResult:
    check_fields(args, "args", ["payload", "path", "domain_id"])
    payload = _parse_payload(args["payload"])
    path = _parse_path(args["path"])
    domain_id = expect_int(args["domain_id"], "domain_id")
    serving = require_initialized(state)
    domain = serving.keyset.get(domain_id)
    if domain is None:
        protocol = state.protocol
        if isinstance(protocol, Initializing) and any(
            e.domain.domain_id == domain_id for e in protocol.generating
        ):
            raise DomainNotFound(f"domain {domain_id} has no key yet")
        raise DomainNotFound(f"there is no domain {domain_id}")
    not_backed_up = signing_problem(state.backup_gate, serving, domain_id)
    if not_backed_up is not None:
        raise KeyNotBackedUp(not_backed_up)
    if len(state.requests) >= state.config.max_pending_requests:
        raise TooManyRequests(
            f"{len(state.requests)} sign requests are pending, the maximum; try again later"
        )
    request = SignRequest(
        request_id=state.next_request_id,
        account=ctx.predecessor,
        payload=payload,
        path=path,
        domain_id=domain_id,
        public_key=derive_public_key(domain.public_key, ctx.predecessor, path),
        block_height=ctx.block_height,
        deadline_height=ctx.block_height + state.config.sign_timeout_blocks,
        deadline_ms=ctx.timestamp_ms + state.config.sign_timeout_ms,
    )
    state.requests[request.request_id] = request
    state.next_request_id += 1
    value = {
        "request_id": request.request_id,
        "public_key": request.public_key.hex(),
        "deadline_height": request.deadline_height,
        "deadline_ms": request.deadline_ms,
    }
    return CallResult(value, [Event(SIGN_REQUESTED, request.to_json())])


def respond(state: ContractState, ctx: CallContext, args: dict[str, Any]) -> CallResult:
    check_fields(args, "args", ["request_id", "signature"])
    request_id = expect_int(args["request_id"], "request_id")
    signature = expect_hex(args["signature"], "signature", 64, 64)
    serving = require_initialized(state)
    info = require_participant(
        serving.parameters, ctx.predecessor, "a participant of the signing set"
    )
    require_node_key(ctx, info)
    request = state.requests.get(request_id)
    if request is None:
        raise RequestNotFound(f"no sign request {request_id} is pending")
    try:
        VerifyKey(request.public_key).verify(request.payload, signature)
    except BadSignatureError as exc:
        raise InvalidSignature(
            f"the signature does not verify for request {request_id} under its derived key"
        ) from exc
    del state.requests[request_id]
    data = {**request.to_json(), "signature": signature.hex(), "responder": ctx.predecessor}
    return CallResult({"request_id": request_id}, [Event(SIGN_RESPONDED, data)])


def _expired(request: SignRequest, height: int, timestamp_ms: int) -> str | None:
    if request.deadline_height <= height:
        return f"not answered within {request.deadline_height - request.block_height} blocks"
    if request.deadline_ms is not None and request.deadline_ms <= timestamp_ms:
        return "not answered in time"
    return None


def expire_requests(state: ContractState, height: int, timestamp_ms: int) -> list[Event]:
    """Fail every request whose deadline height is at or below ``height`` or whose deadline
    time is at or below ``timestamp_ms`` (the block's time), whichever comes first.

    Both deadlines grow with request ids (block heights and block times never decrease and
    the timeouts are fixed at init), so the scan stops at the first request still in time.
    """
    events: list[Event] = []
    while state.requests:
        request_id, request = next(iter(state.requests.items()))
        reason = _expired(request, height, timestamp_ms)
        if reason is None:
            break
        del state.requests[request_id]
        events.append(Event(SIGN_FAILED, {**request.to_json(), "reason": reason}))
    return events


def next_deadline_ms(state: ContractState) -> int | None:
    """The block time at which the oldest pending request fails, if any is pending."""
    for request in state.requests.values():
        return request.deadline_ms
    return None
