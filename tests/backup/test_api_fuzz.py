"""Every HTTP API fuzzed from its own /openapi.json: the ledger, the node's web API with its
/backup endpoints, and the backup service's status API — real processes and real sockets
(tests/openapi_fuzz.py says how requests are made and judged).

Per operation a bounded number of schema-valid and of broken requests: no answer is a 5xx,
no valid request is refused as malformed, every broken one gets a 4xx. Where a refusal of a
valid request comes from a rule the schema cannot state (cross-field rules, a point that
must be on the curve), the rule is listed here and named in the schema's description.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from backup_helpers import (
    Network,
    NodeServer,
    free_port,
    serving,
    start_network,
    store_node_shares,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_backup_service import ServiceProcess, init_service

from openapi_fuzz import Operation, Request, check, invalid_request, operations, valid_request
from quorumkeep.wire.backup.protocol import H_TIMESTAMP
from quorumkeep.wire.tls import client_context

pytestmark = pytest.mark.slow

EXAMPLES = 12  # per operation, valid and broken each

LEDGER_MALFORMED = {
    "MalformedRequest",
    "InvalidRequest",
    "InvalidTransaction",
    "UnsupportedMediaType",
    "BodyTooLarge",
}
LEDGER_RULES = [  # refusals of schema-valid requests by rules JSON Schema cannot state
    r"not a valid Ed25519 public key",  # TransactionModel: keys are curve points
    r"at most one function_call",  # TransactionModel's description
    r"give kinds or exclude_kinds, not both",  # /v1/events: kinds' description
    r"is given more than once",
]
NODE_RULES = [  # docs/backup-protocol.md §2; the PUT body's description
    r"keyset_hash is not the keyset's hash",
    r"not a valid ed25519 public key",
    r"ids must be ascending and distinct",
]


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    net = start_network(tmp_path_factory.mktemp("fuzz"), domains=1)
    store_node_shares(net)
    try:
        yield net
    finally:
        net.close()


def _error(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
        return str(body["error"]["code"]), str(body["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return "", ""


def _malformed(codes: set[str], rules: list[str]) -> Callable[[httpx.Response], bool]:
    def malformed(response: httpx.Response) -> bool:
        if response.status_code < 400 or response.status_code == 405:
            return False
        if response.status_code == 422:
            return True  # FastAPI's own validation: the schema was not what it enforces
        code, message = _error(response)
        return code in codes and not any(re.search(rule, message) for rule in rules)

    return malformed


def fuzz(
    http: httpx.Client,
    ops: list[Operation],
    malformed: Callable[[httpx.Response], bool],
    *,
    adjust: Callable[[Request], None] | None = None,
    known_500: Callable[[Request], bool] = lambda _: False,
) -> list[str]:
    """Run every operation's valid and broken requests; the known 5xx seen (expected)."""
    seen_known: list[str] = []
    for op in ops:
        _fuzz_one(http, op, malformed, adjust, known_500, seen_known)
    return seen_known


def _fuzz_one(
    http: httpx.Client,
    op: Operation,
    malformed: Callable[[httpx.Response], bool],
    adjust: Callable[[Request], None] | None,
    known_500: Callable[[Request], bool],
    seen_known: list[str],
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests every run: a failure reproduces
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def run(data: Any) -> None:
        request = data.draw(valid_request(op, adjust))
        check(op, request, request.send(http), valid=True, malformed=malformed)
        broken = data.draw(invalid_request(op, adjust))
        if broken.broken:
            check(
                op,
                broken,
                broken.send(http),
                valid=False,
                malformed=malformed,
                known_500=known_500,
                seen_known=seen_known,
            )

    run()


def _short_polls(request: Request) -> None:
    """A schema-valid /v1/events timeout, kept short so the fuzz does not wait on polls: at
    most 0.1 s, and 0.1 s where the request left it out (the default is a 30 s poll)."""
    if request.path.startswith("/v1/events") and "timeout" not in request.params:
        request.params["timeout"] = "0.1"
    if "timeout" in request.params:
        with contextlib.suppress(ValueError):
            request.params["timeout"] = str(min(float(request.params["timeout"]), 0.1))


def test_the_ledger_api_from_its_schema(network: Network) -> None:
    with httpx.Client(base_url=network.ledger.url, timeout=30.0) as http:
        doc = http.get("/openapi.json").json()
        ops = operations(doc)
        assert {op.name for op in ops} >= {
            "POST /v1/transactions",
            "POST /v1/view",
            "GET /v1/accounts/{account}",
            "GET /v1/blocks/{height}",
            "GET /v1/transactions/{tx_hash}",
            "GET /v1/events",
            "GET /v1/status",
            "GET /health",
        }
        assert (
            fuzz(http, ops, _malformed(LEDGER_MALFORMED, LEDGER_RULES), adjust=_short_polls) == []
        )
        assert http.get("/health").status_code == 200


def _finding_7(request: Request) -> bool:
    """A non-ASCII digit in the timestamp header (``²`` passes isdigit, fails int): a 500
    until the wire package's fix lands on main — expected here, counted, not hidden."""
    value = request.headers.get(H_TIMESTAMP.title(), b"").decode("latin-1")
    return value.isdigit() and not value.isascii()


def node_status(network: Network) -> dict[str, Any]:
    node = network.node
    return {
        "account": node.account,
        "tls_public_key": node.tls_public_key.hex(),
        "signer_public_key": node.signer_public_key.hex(),
        "role": "participant",
        "participant_id": 1,
        "protocol_state": "Running",
        "epoch": 0,
        "resharing_epoch": None,
        "threshold": 2,
        "participants": [1, 2, 3],
        "peers": [],
        "connected_peers": [],
        "presignatures": {},
        "owned_presignatures": {},
        "keysets": {"0": [0]},
        "pending_requests": 0,
        "ledger_height": 1,
        "uptime_seconds": 1.0,
        "incarnation": "00" * 16,
    }


def test_the_node_web_api_and_backup_endpoints_from_their_schema(network: Network) -> None:
    server = NodeServer(network.node, network.keystore, network.ledger.url, port=free_port())
    server.status = lambda: node_status(network)
    context = client_context(None, None, None, [network.node.certificate])

    def requests() -> list[str]:
        with httpx.Client(base_url=server.url, verify=context, timeout=30.0) as http:
            ops = operations(http.get("/openapi.json").json())
            assert {op.name for op in ops} >= {
                "GET /health",
                "GET /status",
                "GET /metrics",
                "GET /backup/keyshares",
                "PUT /backup/keyshares",
                "POST /backup/recovery-session",
            }
            known = fuzz(
                http, ops, _malformed({"malformed_request"}, NODE_RULES), known_500=_finding_7
            )
            assert http.get("/health").status_code == 200
            return known

    async def scenario() -> list[str]:
        async with serving(server):
            return await asyncio.to_thread(requests)  # the server keeps running on this loop

    for seen in asyncio.run(scenario()):
        print("expected 5xx (finding 7, fixed on the wire branch):", seen)


def test_the_backup_service_status_api_from_its_schema(network: Network, tmp_path: Path) -> None:
    directory = tmp_path / "backup"
    port = free_port()

    def requests() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    doc = http.get("/openapi.json").json()
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, "the status port never answered"
                    time.sleep(0.1)
            ops = operations(doc)
            assert {op.name for op in ops} >= {"GET /health", "GET /status", "GET /metrics"}
            assert fuzz(http, ops, _malformed(set(), [])) == []

    async def scenario() -> None:
        await init_service(network, directory, port)
        service = await ServiceProcess(directory, port).start()
        try:
            await asyncio.to_thread(requests)
        finally:
            await service.stop()

    asyncio.run(scenario())


def test_the_two_inputs_of_findings_7_and_10_are_refused(network: Network) -> None:
    server = NodeServer(network.node, network.keystore, network.ledger.url, port=free_port())
    context = client_context(None, None, None, [network.node.certificate])

    def requests() -> list[int]:
        with httpx.Client(base_url=server.url, verify=context, timeout=30.0) as http:
            hello = {
                "Quorumkeep-Purpose": "backup",
                "Quorumkeep-Account": "alice",
                "Quorumkeep-Node-Key": network.node.tls_public_key.hex(),
                "Quorumkeep-Service-Key": "11" * 32,
                "Quorumkeep-Ephemeral-Key": "22" * 32,
                "Quorumkeep-Timestamp": "²".encode("latin-1"),
                "Quorumkeep-Nonce": "33" * 16,
                "Quorumkeep-Signature": "44" * 64,
            }
            first = http.get("/backup/keyshares", headers=hello).status_code
            second = http.put("/backup/keyshares", content=b"[" * 100_000).status_code
            return [first, second]

    async def scenario() -> list[int]:
        async with serving(server):
            return await asyncio.to_thread(requests)

    statuses = asyncio.run(scenario())
    assert all(400 <= s < 500 for s in statuses), statuses
