"""Emergency recovery on a running devnet: the nodes' parts on the ledger, `ers collect`,
`ers verify` and `ers recover` as an operator runs them, and their refusals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from devnet_helpers import cli
from nacl.signing import VerifyKey

from quorumkeep.devnet import processes, recovery_key
from quorumkeep.devnet.network import USER, Devnet
from quorumkeep.ers.keys import PRIVATE_FILE

pytestmark = pytest.mark.slow

PARTS_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    path = tmp_path_factory.mktemp("ers") / "net"
    try:
        up = cli(
            "devnet", "up", "--nodes", "3", "--threshold", "2", "--dir", str(path),
            "--no-backup", "--timeout", "120",
        )  # fmt: skip
        assert up.returncode == 0, up.stderr
        yield Devnet(path)
    finally:
        if (path / "devnet.json").exists():
            left = Devnet(path)
            left.down(grace=2.0)
            running = [n for n, p in left.record.processes.items() if processes.is_running(p)]
            assert not running, f"devnet down left {running} running"


@pytest.fixture(scope="module")
def bundle(net: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    with net.client() as client:
        net.wait_contract(
            client, recovery_key.parts_complete(0), timeout=PARTS_TIMEOUT, what="recovery parts"
        )
    out = tmp_path_factory.mktemp("bundle") / "bundle.json"
    done = cli("ers", "collect", "--devnet", str(net.path), "--out", str(out))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["parts"] == 3 and summary["threshold"] == 2 and summary["verified"]
    return out


def one_line(done: object) -> str:
    stderr = getattr(done, "stderr", "")
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return str(lines[0])


def test_verify_accepts_the_collected_bundle(bundle: Path) -> None:
    done = cli("ers", "verify", str(bundle), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["valid_parts"] == [1, 2, 3]


def test_verify_against_the_contract_record(net: Devnet, bundle: Path, tmp_path: Path) -> None:
    done = cli("ers", "verify", str(bundle), "--json", "--ledger", net.ledger_url)
    assert done.returncode == 0, done.stderr
    checks = {c["check"]: c["ok"] for c in json.loads(done.stdout)["checks"]}
    assert checks["contract_record"] is True
    # the same parts presented as another epoch's: nothing recorded there
    data = json.loads(bundle.read_text())
    data["epoch"] = 5
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    done = cli("ers", "verify", str(other), "--json", "--ledger", net.ledger_url)
    assert done.returncode == 1
    checks = {c["check"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["contract_record"]["ok"] is False
    assert "no parts" in checks["contract_record"]["detail"]


def test_verify_refuses_a_tampered_part(bundle: Path, tmp_path: Path) -> None:
    data = json.loads(bundle.read_text())
    part = bytearray.fromhex(data["parts"][1]["part"])
    part[500] ^= 1
    data["parts"][1]["part"] = part.hex()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    done = cli("ers", "verify", str(bad))
    assert done.returncode == 1
    assert "digest" in one_line(done)


def recover_args(net: Devnet, bundle: Path, out: Path, *more: str) -> list[str]:
    key_dir = recovery_key.key_dir(net.path)
    return [
        "ers", "recover", str(bundle),
        "--key", str(key_dir / PRIVATE_FILE),
        "--passphrase-file", str(net.secrets.path(recovery_key.SECRET)),
        "--out", str(out), *more,
    ]  # fmt: skip


def test_recover_signs_under_the_networks_derived_key(
    net: Devnet, bundle: Path, tmp_path: Path
) -> None:
    message = b"the company is gone; the key is not".hex()
    done = cli(
        *recover_args(
            net, bundle, tmp_path / "key.json", "--account", USER, "--path", "ers/1",
            "--sign", message,
        )
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    with net.client() as client:
        expected = client.view("public_key", {"domain_id": 0, "account": USER, "path": "ers/1"})
        group = client.view("public_key_package", {"domain_id": 0})["public_key"]
    assert result["public_key"] == expected and result["group_public_key"] == group
    VerifyKey(bytes.fromhex(expected)).verify(
        bytes.fromhex(message), bytes.fromhex(result["signature"])
    )
    assert set(json.loads((tmp_path / "key.json").read_text())) >= {"sealed_secret_scalar"}
    assert '"secret_scalar"' not in (tmp_path / "key.json").read_text()


def test_recover_refusals(net: Devnet, bundle: Path, tmp_path: Path) -> None:
    data = json.loads(bundle.read_text())
    data["parts"] = data["parts"][:1]
    few = tmp_path / "few.json"
    few.write_text(json.dumps(data))
    done = cli(*recover_args(net, few, tmp_path / "a.json"))
    assert done.returncode == 1
    assert "not_enough_parts" in one_line(done)
    done = cli(*recover_args(net, bundle, tmp_path / "b.json", "--epoch", "7"))
    assert done.returncode == 1
    assert "wrong_epoch" in one_line(done)
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "b.json").exists()


def test_collect_refuses_an_epoch_without_parts(net: Devnet, tmp_path: Path) -> None:
    done = cli(
        "ers", "collect", "--devnet", str(net.path), "--epoch", "9", "--out", str(tmp_path / "x")
    )
    assert done.returncode == 1
    assert "no_parts" in one_line(done)
