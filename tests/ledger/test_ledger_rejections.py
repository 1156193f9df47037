"""Every refusal of the HTTP API, against a real `ledger serve` process.

Each test checks the status code, the stable error code, the one-line error shape and that
nothing changed: every account's keys and nonces, the contract state, and (for signed
transactions) that the transaction is in no block.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from ledger_helpers import (
    LedgerProcess,
    backup_service_args,
    init_args,
    make_ledger,
    new_signer,
    sign_tx,
)

from quorumkeep.contract import VIEW_METHODS
from quorumkeep.ledger.api_models import SignedTransactionModel
from quorumkeep.ledger.client import AccountSigner, LedgerClient
from quorumkeep.ledger.server import MAX_BODY_BYTES
from quorumkeep.ledger.transaction import (
    FULL_ACCESS,
    AddKey,
    DeleteKey,
    FunctionCall,
    Permission,
    SignedTransaction,
)

pytestmark = pytest.mark.slow

ACCOUNTS = ("alice", "bob", "carol", "dave")
VALIDITY = 40


@dataclass
class Env:
    url: str
    chain_id: bytes
    signers: dict[str, AccountSigner]
    node_key: AccountSigner  # a function-call key of dave's limited to ["respond"]
    http: httpx.Client

    def height(self) -> int:
        return int(self.http.get("/v1/status").json()["height"])

    def nonce(self, signer: AccountSigner) -> int:
        keys = self.http.get(f"/v1/accounts/{signer.account}").json()["keys"]
        return int(next(k["nonce"] for k in keys if k["public_key"] == signer.public_key_hex))

    def tx(self, signer: AccountSigner, **overrides: Any) -> SignedTransaction:
        fields: dict[str, Any] = {
            "chain_id": self.chain_id,
            "nonce": self.nonce(signer) + 1,
            "block_height": self.height(),
        }
        fields.update(overrides)
        return sign_tx(signer, **fields)

    def snapshot(self) -> Any:
        accounts = {a: self.http.get(f"/v1/accounts/{a}").json()["keys"] for a in ACCOUNTS}
        state = self.http.post("/v1/view", json={"method": "state"}).json()["value"]
        return accounts, state

    def post(self, body: Any) -> httpx.Response:
        return self.http.post("/v1/transactions", json=body)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root: Path = tmp_path_factory.mktemp("rejections")
    ledger = make_ledger(root / "data", ACCOUNTS, tx_validity_blocks=VALIDITY)
    server = LedgerProcess(ledger.path, idle_block_ms=20).start()
    try:
        node_key = new_signer("dave")
        with LedgerClient(server.url) as client:
            client.call(ledger.signers["alice"], "init", init_args(["alice", "bob", "carol"]))
            client.add_key(
                ledger.signers["dave"], node_key.public_key, Permission(("respond",))
            ).raise_for_failure()
        with httpx.Client(base_url=server.url, timeout=30.0) as http:
            yield Env(server.url, ledger.chain_id, ledger.signers, node_key, http)
    finally:
        server.terminate()


def refused(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    message = body["error"]["message"]
    assert isinstance(message, str) and message and "\n" not in message
    return str(message)


def submit_refused(env: Env, signed: SignedTransaction | Any, status: int, code: str) -> str:
    before = env.snapshot()
    body = signed.to_json() if isinstance(signed, SignedTransaction) else signed
    message = refused(env.post(body), status, code)
    assert env.snapshot() == before
    if isinstance(signed, SignedTransaction):
        lookup = env.http.get(f"/v1/transactions/{signed.hash.hex()}")
        refused(lookup, 404, "TransactionNotFound")
    return message


# --- malformed requests ---------------------------------------------------------------


def test_malformed_json(env: Env) -> None:
    before = env.snapshot()
    response = env.http.post(
        "/v1/transactions",
        content=b'{"transaction": ',
        headers={"content-type": "application/json"},
    )
    refused(response, 400, "MalformedRequest")
    assert env.snapshot() == before


def test_duplicate_json_keys(env: Env) -> None:
    signed = env.tx(env.signers["bob"])
    text = json.dumps(signed.to_json())
    doubled = text[:-1] + ', "signature": "' + "00" * 64 + '"}'
    before = env.snapshot()
    response = env.http.post(
        "/v1/transactions", content=doubled, headers={"content-type": "application/json"}
    )
    refused(response, 400, "MalformedRequest")
    assert env.snapshot() == before


def test_wrong_type(env: Env) -> None:
    body = env.tx(env.signers["bob"]).to_json()
    body["transaction"]["nonce"] = str(body["transaction"]["nonce"])
    submit_refused(env, body, 400, "InvalidTransaction")


def test_missing_field(env: Env) -> None:
    body = env.tx(env.signers["bob"]).to_json()
    del body["transaction"]["block_height"]
    submit_refused(env, body, 400, "InvalidTransaction")


def test_unknown_field(env: Env) -> None:
    body = env.tx(env.signers["bob"]).to_json()
    body["transaction"]["memo"] = "hi"
    submit_refused(env, body, 400, "InvalidTransaction")


def test_float_in_args(env: Env) -> None:
    signed = env.tx(env.signers["bob"], actions=[FunctionCall("sign", {"payload": 1.5})])
    submit_refused(env, signed.to_json(), 400, "InvalidTransaction")


def test_body_not_an_object(env: Env) -> None:
    submit_refused(env, [1, 2, 3], 400, "InvalidTransaction")


def test_oversize_body(env: Env) -> None:
    before = env.snapshot()
    response = env.http.post(
        "/v1/transactions",
        content=b'{"pad": "' + b"a" * MAX_BODY_BYTES + b'"}',
        headers={"content-type": "application/json"},
    )
    refused(response, 413, "BodyTooLarge")
    assert env.snapshot() == before


def test_oversize_chunked_body(env: Env) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 1024 + 16):
            yield b"x" * 1024

    before = env.snapshot()
    response = env.http.post(
        "/v1/transactions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    refused(response, 413, "BodyTooLarge")
    assert env.snapshot() == before


# --- who signed -----------------------------------------------------------------------


def test_bad_signature(env: Env) -> None:
    signed = env.tx(env.signers["bob"])
    forged = SignedTransaction(
        signed.transaction, bytes([signed.signature[0] ^ 1]) + signed.signature[1:], signed.message
    )
    submit_refused(env, forged, 401, "InvalidSignature")


def test_signature_over_other_content(env: Env) -> None:
    signed = env.tx(env.signers["bob"])
    body = signed.to_json()
    body["transaction"]["nonce"] += 1  # the signature covered the old nonce
    submit_refused(env, body, 401, "InvalidSignature")


def test_unknown_account(env: Env) -> None:
    stranger = new_signer("mallory")
    signed = sign_tx(stranger, chain_id=env.chain_id, nonce=1, block_height=env.height())
    submit_refused(env, signed, 404, "UnknownAccount")


def test_unknown_access_key(env: Env) -> None:
    impostor = new_signer("bob")  # bob's name, not one of bob's keys
    signed = sign_tx(impostor, chain_id=env.chain_id, nonce=1, block_height=env.height())
    submit_refused(env, signed, 401, "UnknownAccessKey")


# --- replay protection and expiry -----------------------------------------------------


def test_stale_nonce(env: Env) -> None:
    bob = env.signers["bob"]
    with LedgerClient(env.url) as client:
        client.call(bob, "register_backup_service", backup_service_args())
    signed = env.tx(bob, nonce=env.nonce(bob))  # equal to the current nonce: not above it
    submit_refused(env, signed, 409, "InvalidNonce")


def test_replayed_transaction(env: Env) -> None:
    signed = env.tx(env.signers["carol"])
    first = env.post(signed.to_json())
    assert first.status_code == 200 and first.json()["status"] == "success"
    before = env.snapshot()
    message = refused(env.post(signed.to_json()), 409, "DuplicateTransaction")
    assert signed.hash.hex() in message
    assert env.snapshot() == before


def test_expired_block_height(env: Env) -> None:
    deadline = time.monotonic() + 20
    while env.height() <= VALIDITY + 1:  # idle blocks come every 20 ms
        assert time.monotonic() < deadline, "the ledger produced no idle blocks"
        time.sleep(0.05)
    signed = env.tx(env.signers["bob"], block_height=0)
    submit_refused(env, signed, 400, "TransactionExpired")


def test_block_height_in_future(env: Env) -> None:
    signed = env.tx(env.signers["bob"], block_height=env.height() + 1000)
    submit_refused(env, signed, 400, "InvalidBlockHeight")


def test_wrong_chain(env: Env) -> None:
    signed = env.tx(env.signers["bob"], chain_id=bytes(32))
    submit_refused(env, signed, 400, "WrongChain")


# --- access keys ----------------------------------------------------------------------


def test_unknown_method(env: Env) -> None:
    signed = env.tx(env.signers["bob"], actions=[FunctionCall("mint_money", {})])
    submit_refused(env, signed, 400, "UnknownMethod")


def test_function_call_key_outside_its_methods(env: Env) -> None:
    signed = env.tx(env.node_key, actions=[FunctionCall("vote_pk", {})])
    submit_refused(env, signed, 403, "KeyMethodNotAllowed")


def test_function_call_key_cannot_call_operator_method(env: Env) -> None:
    signed = env.tx(
        env.node_key, actions=[FunctionCall("register_backup_service", backup_service_args())]
    )
    message = submit_refused(env, signed, 403, "FullAccessRequired")
    assert "register_backup_service" in message


def test_function_call_key_cannot_add_keys(env: Env) -> None:
    signed = env.tx(env.node_key, actions=[AddKey(new_signer("dave").public_key, FULL_ACCESS)])
    submit_refused(env, signed, 403, "FullAccessRequired")


def test_permission_listing_an_operator_method(env: Env) -> None:
    permission = Permission(("respond", "start_node_migration"))
    signed = env.tx(env.signers["dave"], actions=[AddKey(new_signer("x").public_key, permission)])
    submit_refused(env, signed, 400, "InvalidPermission")


def test_add_existing_key(env: Env) -> None:
    signed = env.tx(env.signers["dave"], actions=[AddKey(env.node_key.public_key, FULL_ACCESS)])
    submit_refused(env, signed, 409, "AccessKeyExists")


def test_delete_missing_key(env: Env) -> None:
    signed = env.tx(env.signers["dave"], actions=[DeleteKey(new_signer("x").public_key)])
    submit_refused(env, signed, 404, "AccessKeyNotFound")


def test_delete_last_full_access_key(env: Env) -> None:
    carol = env.signers["carol"]
    signed = env.tx(carol, actions=[DeleteKey(carol.public_key)])
    submit_refused(env, signed, 409, "LastFullAccessKey")


# --- reads ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"method": "no_such_view"}, "UnknownMethod"),
        ({"method": "state", "args": [1]}, "InvalidRequest"),
        ({"args": {}}, "InvalidRequest"),
        ({"method": "state", "args": {"x": 0.5}}, "InvalidRequest"),
    ],
)
def test_bad_view(env: Env, body: Any, code: str) -> None:
    before = env.snapshot()
    refused(env.http.post("/v1/view", json=body), 400, code)
    assert env.snapshot() == before


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/blocks/abc", 400, "InvalidRequest"),
        ("/v1/blocks/100000000", 404, "BlockNotFound"),
        ("/v1/accounts/Not_An_Account!", 400, "InvalidRequest"),
        ("/v1/accounts/nobody", 404, "UnknownAccount"),
        ("/v1/transactions/xyz", 400, "InvalidRequest"),
        ("/v1/events?since=100000000&timeout=0", 400, "InvalidCursor"),
        ("/v1/events?since=0&timeout=-1", 400, "InvalidRequest"),
        ("/v1/events?since=0&timeout=999", 400, "InvalidRequest"),
        ("/v1/nothing-here", 404, "NotFound"),
        ("/v1/blocks/0/", 404, "NotFound"),  # no redirect to /v1/blocks/0 (found by the fuzz)
        ("/v1/blocks/0%2F", 404, "NotFound"),
        ("/v1/status/", 404, "NotFound"),
    ],
)
def test_bad_read(env: Env, path: str, status: int, code: str) -> None:
    refused(env.http.get(path), status, code)


TOO_MANY_KINDS = ",".join(f"k{i}" for i in range(33))
LONGEST_KIND = "k" * 64


@pytest.mark.parametrize(
    ("query", "rule"),
    [
        ("kinds=", "empty kind"),
        ("exclude_kinds=", "empty kind"),
        ("kinds=sign_failed,,sign_responded", "empty kind"),
        ("kinds=sign_failed,", "empty kind"),
        ("exclude_kinds=,sign_failed", "empty kind"),
        (f"kinds={TOO_MANY_KINDS}", "at most 32 kinds"),
        (f"exclude_kinds={TOO_MANY_KINDS}", "at most 32 kinds"),
        (f"kinds={LONGEST_KIND}k", "at most 64 characters"),
        ("kinds=Sign_Failed", "is not [a-z0-9_]+"),
        ("kinds=sign_failed,%20sign_responded", "is not [a-z0-9_]+"),
        ("kinds=sign-failed", "is not [a-z0-9_]+"),
        ("kinds=sign_failed&exclude_kinds=sign_responded", "not both"),
        ("kinds=sign_failed&kinds=sign_responded", "kinds is given more than once"),
        ("exclude_kinds=a&exclude_kinds=b", "exclude_kinds is given more than once"),
    ],
)
def test_bad_event_filter(env: Env, query: str, rule: str) -> None:
    message = refused(env.http.get(f"/v1/events?since=0&timeout=0&{query}"), 400, "InvalidRequest")
    assert rule in message


@pytest.mark.parametrize(
    "query",
    [
        ",".join(f"k{i}" for i in range(32)),  # the most kinds
        f"{LONGEST_KIND},sign_failed,sign_failed",  # the longest kind; a repeated kind
        "kind_the_contract_never_emits",
    ],
)
def test_event_filter_at_the_limits_is_accepted(env: Env, query: str) -> None:
    for name in ("kinds", "exclude_kinds"):
        response = env.http.get(f"/v1/events?since=0&timeout=0&{name}={query}")
        assert response.status_code == 200, response.text
        assert response.json()["next"] >= 0


def test_wrong_http_method(env: Env) -> None:
    response = env.http.get("/v1/transactions")
    refused(response, 405, "HttpMethodNotAllowed")
    assert response.headers["allow"] == "POST"
    response = env.http.post("/v1/status")
    refused(response, 405, "HttpMethodNotAllowed")
    assert response.headers["allow"] == "GET"


@pytest.mark.parametrize("path", ["/v1/view", "/v1/transactions"])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_declared_json_is_refused(
    env: Env, path: str, content_type: str | None
) -> None:
    before = env.snapshot()
    body = json.dumps({"method": "state"}).encode()
    headers = {} if content_type is None else {"content-type": content_type}
    request = env.http.build_request("POST", path, content=body, headers=headers)
    assert request.headers.get("content-type") == content_type
    refused(env.http.send(request), 415, "UnsupportedMediaType")
    assert env.snapshot() == before
    for accepted in ("application/json", "application/json; charset=utf-8"):
        response = env.http.post("/v1/view", content=body, headers={"content-type": accepted})
        assert response.status_code == 200, response.text


# --- not refusals: contract rejections are included -----------------------------------


def test_contract_rejection_is_included_and_uses_the_nonce(env: Env) -> None:
    dave = env.signers["dave"]  # not a participant: the contract refuses
    signed = env.tx(dave)
    response = env.post(signed.to_json())
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "failure"
    assert body["error"]["code"] == "NotParticipant"
    assert env.nonce(dave) == signed.transaction.nonce
    included = env.http.get(f"/v1/transactions/{signed.hash.hex()}").json()
    assert included["outcome"]["error"]["code"] == "NotParticipant"
    assert included["block_height"] == body["block_height"]


def test_key_actions_roll_back_when_the_call_fails(env: Env) -> None:
    dave = env.signers["dave"]
    extra = new_signer("dave")
    signed = env.tx(
        dave,
        actions=[
            AddKey(extra.public_key, FULL_ACCESS),
            FunctionCall("register_backup_service", backup_service_args()),
        ],
    )
    body = env.post(signed.to_json()).json()
    assert body["status"] == "failure"
    keys = env.http.get("/v1/accounts/dave").json()["keys"]
    assert extra.public_key_hex not in {k["public_key"] for k in keys}
    assert env.nonce(dave) == signed.transaction.nonce


# --- the published schema -------------------------------------------------------------


def test_openapi_describes_every_endpoint(env: Env) -> None:
    schema = env.http.get("/openapi.json").json()
    assert set(schema["paths"]) >= {
        "/v1/transactions",
        "/v1/view",
        "/v1/accounts/{account}",
        "/v1/blocks/{height}",
        "/v1/transactions/{tx_hash}",
        "/v1/events",
        "/v1/status",
        "/health",
    }
    body = schema["paths"]["/v1/transactions"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/SignedTransactionModel"
    assert "TransactionModel" in schema["components"]["schemas"]


def test_what_the_client_signs_matches_the_published_schema(env: Env) -> None:
    signed = env.tx(
        env.signers["dave"],
        actions=[
            AddKey(new_signer("x").public_key, Permission(("respond",))),
            DeleteKey(new_signer("x").public_key),
            FunctionCall("register_backup_service", backup_service_args()),
        ],
    )
    SignedTransactionModel.model_validate(signed.to_json())


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = json.loads(json.dumps(value))
    target = copy
    for step in path[:-1]:
        target = target[step]
    if new is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = new
    return copy


_DELETE = object()
_JUNK: list[Any] = [None, True, -1, 0, 2**64, 1.5, "", "zz", [], {}, [1], {"a": 1}, _DELETE]


def test_no_mutation_of_a_transaction_gets_a_5xx_or_changes_anything(env: Env) -> None:
    signed = env.tx(
        env.signers["bob"],
        actions=[
            AddKey(new_signer("x").public_key, Permission(("respond",))),
            FunctionCall("register_backup_service", backup_service_args()),
        ],
    )
    original = signed.to_json()
    before = env.snapshot()
    seen: set[int] = set()
    for path in _paths(original):
        for junk in _JUNK:
            if junk is _DELETE and not path:
                continue
            body = _replace(original, path, junk)
            response = env.post(body)
            seen.add(response.status_code)
            if response.status_code == 200:  # a change the signature does not cover: none
                raise AssertionError(f"mutated transaction accepted: {path} -> {junk!r}")
            assert 400 <= response.status_code < 500, (path, junk, response.text)
            assert set(response.json()) == {"error"}
    assert env.snapshot() == before
    assert seen <= {400, 401, 403, 404, 409, 415}  # 415: a body of `null` sends no JSON


def test_no_view_arguments_get_a_5xx(env: Env) -> None:
    keys = ("account", "request_id", "domain_id", "path", "unknown")
    values: list[Any] = [None, True, -1, 0, 2**60, "", "zz", "ab" * 32, [], {}, {"a": 1}]
    for method in sorted(VIEW_METHODS):
        for args in [{}, *({k: v} for k in keys for v in values)]:
            response = env.http.post("/v1/view", json={"method": method, "args": args})
            assert response.status_code in (200, 400), (method, args, response.text)
            if response.status_code == 400:
                refused(response, 400, response.json()["error"]["code"])
