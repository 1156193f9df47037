"""The primary's pushes to its warm standby and the standby's endpoint, without processes.

StandbyFeed with an injected push and a real keystore: one push per keyset, again after a
key change, retried after a failure, never where ``[export]`` does not allow it. The endpoint
``PUT /standby/wrapped-export`` through an ASGI transport: each refusal's code and status,
and nothing secret in an unexpected failure's answer. ``node export`` and ``node import``'s
refusals that come before any network.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from component_helpers import (
    DOMAINS,
    EPOCH,
    FakeLedger,
    key_pair,
    metrics,
    open_keystore,
    share_secret,
    unavailable,
)
from fastapi import FastAPI
from node_helpers import run
from test_wrapped_export import (
    PRIMARY_TLS,
    PRIMARY_WRAP,
    STANDBY,
    STANDBY_WRAP,
    STRANGER_WRAP,
    Standby,
    contract_with,
    export,
)

from quorumkeep.node.config import ExportConfig, NodeConfig, PassphraseKeyConfig
from quorumkeep.node.held_keys import HeldKeys
from quorumkeep.node.metrics import NodeMetrics
from quorumkeep.node.standby_api import standby_router
from quorumkeep.node.standby_feed import PushFailed, StandbyFeed
from quorumkeep.node.wrapped_export import export_shares, import_file
from quorumkeep.wire.backup.protocol import MAX_BODY_BYTES
from quorumkeep.wire.wrapped import (
    PATH_WRAPPED_EXPORT,
    WrappedExport,
    WrappedExportError,
    open_export,
)

STANDBY_KEY = STANDBY_WRAP.public_key.hex()


def export_config(
    *, allow: bool = True, whitelist: tuple[str, ...] = (STANDBY_KEY,)
) -> ExportConfig:
    return ExportConfig(
        allow=allow,
        whitelist=whitelist,
        standby_web_url="https://127.0.0.1:9",
        standby_tls_public_key=STANDBY.tls_public_key.hex(),
        standby_wrapping_key=STANDBY_KEY,
    )


class Pushes:
    """The standby as the feed sees it: fails ``failures`` times, then takes every body."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.taken: list[WrappedExport] = []

    async def __call__(self, body: bytes) -> dict[str, Any]:
        if self.failures:
            self.failures -= 1
            raise PushFailed("standby_unreachable", "https://127.0.0.1:9: ConnectError")
        taken = WrappedExport.from_bytes(body)
        self.taken.append(taken)
        return {"epoch": taken.epoch}


class Primary:
    def __init__(self, tmp_path: Path, config: ExportConfig, push: Pushes) -> None:
        self.keystore = open_keystore(tmp_path)
        self.held = HeldKeys(self.keystore)
        self.metrics = metrics()
        self.feed = StandbyFeed(
            account="alice",
            export=config,
            source=lambda: PRIMARY_TLS,
            wrapping_key=PRIMARY_WRAP,
            held=self.held,
            metrics=self.metrics,
            push=push,
            uniform=lambda: 0.99,  # the shortest retry delay of the policy
        )

    def hold(self, epoch: int) -> None:
        for domain_id in DOMAINS:
            self.held.store(domain_id, epoch, *key_pair(1, domain_id, epoch))

    async def idle(self, timeout: float = 10.0) -> None:
        tasks = self.feed.tasks()
        if tasks:
            await asyncio.wait_for(asyncio.gather(*tasks), timeout)


def pushes(m: NodeMetrics, outcome: str) -> float:
    value = m.registry.get_sample_value("quorumkeep_standby_pushes_total", {"outcome": outcome})
    return value or 0.0


def test_the_primary_pushes_each_keyset_once_and_again_after_a_key_change(tmp_path: Path) -> None:
    push = Pushes()
    primary = Primary(tmp_path, export_config(), push)
    primary.hold(EPOCH)
    primary.hold(EPOCH + 1)

    async def main() -> None:
        primary.feed.update(contract_with(), 1)  # the first state read: start
        await primary.idle()
        primary.feed.update(contract_with(), 1)  # the same keyset: nothing to push
        await primary.idle()
        assert len(push.taken) == 1
        primary.feed.update(contract_with(epoch=EPOCH + 1), 1)  # a resharing concluded
        await primary.idle()

    run(main())
    assert [t.epoch for t in push.taken] == [EPOCH, EPOCH + 1]
    for taken in push.taken:
        opened = open_export(taken, STANDBY_WRAP, "alice")
        assert [s.signing_share for s in opened] == [
            share_secret(d, 1, taken.epoch) for d in DOMAINS
        ]
    status = primary.feed.status()
    assert status["pushed_epoch"] == EPOCH + 1 and status["error"] is None
    assert status["pending"] is False
    assert primary.metrics.registry.get_sample_value("quorumkeep_standby_pushed_epoch") == EPOCH + 1
    assert pushes(primary.metrics, "ok") == 2


def test_a_failed_push_is_retried_until_the_standby_takes_it(tmp_path: Path) -> None:
    push = Pushes(failures=2)
    primary = Primary(tmp_path, export_config(), push)
    primary.hold(EPOCH)

    async def main() -> None:
        primary.feed.update(contract_with(), 1)
        await primary.idle()

    run(main())
    assert [t.epoch for t in push.taken] == [EPOCH]
    assert pushes(primary.metrics, "failed") == 2
    assert primary.feed.status()["error"] is None


@pytest.mark.parametrize(
    ("config", "code"),
    [
        (export_config(allow=False), "export_disabled"),
        (export_config(whitelist=(STRANGER_WRAP.public_key.hex(),)), "not_whitelisted"),
    ],
)
def test_no_push_where_export_is_not_allowed(
    tmp_path: Path, config: ExportConfig, code: str
) -> None:
    push = Pushes()
    primary = Primary(tmp_path, config, push)
    primary.hold(EPOCH)

    async def main() -> None:
        primary.feed.update(contract_with(), 1)
        await primary.idle()

    run(main())
    assert push.taken == []
    error = primary.feed.status()["error"]
    assert error is not None and error["code"] == code
    assert pushes(primary.metrics, "refused") == 1
    assert primary.feed.status()["pushed_epoch"] is None


def test_a_node_that_is_no_participant_pushes_nothing(tmp_path: Path) -> None:
    push = Pushes(failures=1_000)  # would retry for ever
    primary = Primary(tmp_path, export_config(), push)
    primary.hold(EPOCH)

    async def main() -> None:
        primary.feed.update(contract_with(), 1)
        primary.feed.update(contract_with(), None)  # replaced: the push is cancelled
        assert primary.feed.tasks() == []
        await asyncio.sleep(0)

    run(main())
    assert push.taken == []


# --- the standby's endpoint --------------------------------------------------------------------


def put(
    body: bytes, importer: Any, *, ready: bool = True
) -> tuple[int, dict[str, Any], httpx.Headers]:
    app = FastAPI()
    app.include_router(standby_router("alice", importer, lambda: ready))

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            return await client.put(PATH_WRAPPED_EXPORT, content=body)

    response = run(main())
    return response.status_code, response.json(), response.headers


async def takes(taken: WrappedExport) -> dict[str, Any]:
    return {"account": taken.account, "epoch": taken.epoch, "migration": None}


def raising(exc: Exception) -> Any:
    async def importer(_taken: WrappedExport) -> dict[str, Any]:
        raise exc

    return importer


def test_the_endpoint_answers_the_import() -> None:
    status, body, _ = put(export().to_bytes(), takes)
    assert status == 200 and body == {"account": "alice", "epoch": EPOCH, "migration": None}


@pytest.mark.parametrize(
    ("body", "importer", "ready", "status", "code"),
    [
        (export().to_bytes(), takes, False, 503, "contract_unavailable"),
        (b"x" * (MAX_BODY_BYTES + 1), takes, True, 413, "body_too_large"),
        (b"{not json", takes, True, 400, "malformed_export"),
        (b'{"format": "quorumkeep wrapped export v1"}', takes, True, 400, "malformed_export"),
        (
            export().to_bytes(),
            raising(WrappedExportError("wrong_epoch", "old")),
            True,
            409,
            "wrong_epoch",
        ),
        (
            export().to_bytes(),
            raising(WrappedExportError("wrong_destination", "not ours")),
            True,
            421,
            "wrong_destination",
        ),
        (
            export().to_bytes(),
            raising(WrappedExportError("unknown_source", "who")),
            True,
            403,
            "unknown_source",
        ),
        (
            export().to_bytes(),
            raising(WrappedExportError("shares_mismatch", "no")),
            True,
            422,
            "shares_mismatch",
        ),
    ],
)
def test_the_endpoint_refuses_with_a_stable_code(
    body: bytes, importer: Any, ready: bool, status: int, code: str
) -> None:
    answered, answer, headers = put(body, importer, ready=ready)
    assert (answered, answer["error"]["code"]) == (status, code)
    if code == "contract_unavailable":
        assert "retry-after" in headers


def test_an_unexpected_failure_is_import_failed_and_names_no_secret() -> None:
    secret = share_secret(0, 1).hex()
    status, answer, _ = put(export().to_bytes(), raising(RuntimeError(f"share {secret}")))
    assert (status, answer["error"]["code"]) == (500, "import_failed")
    assert secret not in repr(answer)


def test_the_standby_refuses_while_the_contract_cannot_be_read(tmp_path: Path) -> None:
    ledger = FakeLedger(contract_with())
    ledger.fail("state", unavailable())
    node = Standby(tmp_path, ledger)
    with pytest.raises(WrappedExportError) as refused:
        run(node.standby.import_export(export()))
    assert refused.value.code == "contract_unavailable"
    assert node.slots() == []


# --- what the commands do, before any network ---------------------------------------------------


def node_config(directory: Path, export: ExportConfig) -> NodeConfig:
    return NodeConfig(
        account="alice",
        data_dir=directory,
        ledger_url="http://127.0.0.1:1",
        p2p_listen="127.0.0.1:1",
        web_listen="127.0.0.1:1",
        storage_key=PassphraseKeyConfig(passphrase_env="UNUSED"),
        export=export,
    )


@pytest.mark.parametrize(
    ("config", "code"),
    [
        (ExportConfig(), "export_disabled"),
        (ExportConfig(allow=True, whitelist=(STRANGER_WRAP.public_key.hex(),)), "not_whitelisted"),
        # allowed: the next step reads the contract, and the ledger at port 1 is not there
        (ExportConfig(allow=True, whitelist=(STANDBY_KEY,)), "contract_unavailable"),
    ],
)
def test_node_export_refuses_before_it_reads_anything(
    tmp_path: Path, config: ExportConfig, code: str
) -> None:
    with pytest.raises(WrappedExportError) as refused:
        export_shares(node_config(tmp_path, config), STANDBY_WRAP.public_key)
    assert refused.value.code == code


def test_node_import_refuses_a_damaged_file_or_a_directory_without_a_certificate(
    tmp_path: Path,
) -> None:
    config = node_config(tmp_path, ExportConfig())
    with pytest.raises(WrappedExportError) as damaged:
        import_file(config, b'{"format": "something else"}')
    assert damaged.value.code == "malformed_export"
    with pytest.raises(WrappedExportError) as no_certificate:
        import_file(config, export().to_bytes())
    assert no_certificate.value.code == "import_failed"
