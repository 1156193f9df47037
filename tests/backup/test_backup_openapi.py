"""The node's /openapi.json describes the /backup endpoints as the node parses them: their
hello headers, the PUT body and the answers — real messages validate against it."""

from __future__ import annotations

import os
from typing import Any

import jsonschema
import pytest
from test_backup_wire_golden import Exchange, build

from quorumkeep.node.backup_api import BackupNodeDeps, backup_router
from quorumkeep.node.metrics import MetricsSnapshot, NodeMetrics
from quorumkeep.node.web import create_app
from quorumkeep.wire.backup import HELLO_HEADERS, Ed25519Signer


def node_openapi() -> dict[str, Any]:
    async def nothing(*_: Any) -> Any:
        return None

    deps = BackupNodeDeps(
        account="alice",
        tls_signer=Ed25519Signer(os.urandom(32)),
        read_view=nothing,
        current_shares=nothing,
        import_shares=nothing,
    )
    app = create_app(
        status=dict, metrics=NodeMetrics(), snapshot=MetricsSnapshot, routers=[backup_router(deps)]
    )
    return app.openapi()


@pytest.fixture(scope="module")
def exchange() -> Exchange:
    return build()


def _schema(doc: dict[str, Any], path: str, method: str, where: str) -> dict[str, Any]:
    operation = doc["paths"][path][method]
    if where == "body":
        return operation["requestBody"]["content"]["application/json"]["schema"]  # type: ignore[no-any-return]
    return operation["responses"]["200"]["content"]["application/json"]["schema"]  # type: ignore[no-any-return]


def test_hello_headers_are_documented_and_real_hellos_match(exchange: Exchange) -> None:
    doc = node_openapi()
    for (path, method), hello in {
        ("/backup/keyshares", "get"): exchange.backup_hello,
        ("/backup/recovery-session", "post"): exchange.recovery_hello,
    }.items():
        parameters = doc["paths"][path][method]["parameters"]
        assert {p["name"].lower() for p in parameters} == set(HELLO_HEADERS)
        assert all(p["in"] == "header" and p["required"] for p in parameters)
        headers = hello.to_headers()
        for parameter in parameters:
            jsonschema.validate(headers[parameter["name"].lower()], parameter["schema"])


def test_bodies_and_answers_are_documented_and_real_messages_match(exchange: Exchange) -> None:
    doc = node_openapi()
    cases = [
        ("/backup/keyshares", "put", "body", exchange.recovery_push),
        ("/backup/keyshares", "put", "answer", exchange.recovery_ack),
        ("/backup/keyshares", "get", "answer", exchange.backup_response),
        ("/backup/recovery-session", "post", "answer", exchange.recovery_session),
    ]
    for path, method, where, message in cases:
        schema = _schema(doc, path, method, where)
        jsonschema.validate(message.to_json(), schema)
        extra = dict(message.to_json(), unknown=1)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(extra, schema)
    for path, method in [
        ("/backup/keyshares", "get"),
        ("/backup/keyshares", "put"),
        ("/backup/recovery-session", "post"),
    ]:
        responses = doc["paths"][path][method]["responses"]
        assert {"200", "400", "401", "403", "409", "421", "503"} <= set(responses)
