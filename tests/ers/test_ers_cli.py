"""`quorumkeep ers keygen|verify|recover` in-process (Typer's runner): exit codes and the
one-line errors of every refusal."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from ers_helpers import load_test_key, make_bundle
from typer.testing import CliRunner

from quorumkeep.cli.ers import app
from quorumkeep.ers.bundle import write_bundle

RUNNER = CliRunner()
PRIVATE = load_test_key()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ers-cli")
    bundle, _, _ = make_bundle(PRIVATE, threshold=2, ids=(1, 2, 3), epoch=1)
    write_bundle(root / "bundle.json", bundle)
    write_bundle(root / "few.json", replace(bundle, parts=bundle.parts[:1]))
    (root / "pass").write_text("pw\n")
    (root / "key.pem").write_bytes(
        PRIVATE.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    return {
        "root": root,
        "bundle": root / "bundle.json",
        "few": root / "few.json",
        "pass": root / "pass",
        "key": root / "key.pem",
    }


def run(*args: str) -> tuple[int, str, str]:
    result = RUNNER.invoke(app, list(args), env={"QUORUMKEEP_PASSPHRASE": ""})
    return result.exit_code, result.stdout, result.stderr


def test_keygen_prints_the_fingerprint(tmp_path: Path) -> None:
    (tmp_path / "p").write_text("pw")
    code, out, _ = run(
        "keygen", "--out", str(tmp_path / "k"), "--bits", "2048",
        "--passphrase-file", str(tmp_path / "p"),
    )  # fmt: skip
    assert code == 0
    info = json.loads(out)
    assert len(bytes.fromhex(info["fingerprint"])) == 32 and info["bits"] == 2048
    code, _, err = run(
        "keygen", "--out", str(tmp_path / "k"), "--passphrase-file", str(tmp_path / "p")
    )
    assert code == 2 and err.startswith("error: exists:")
    code, _, err = run("keygen", "--out", str(tmp_path / "k2"))
    assert code == 2 and err.startswith("error: passphrase_unavailable:")


def test_verify_exit_codes(files: dict[str, Path], tmp_path: Path) -> None:
    code, out, _ = run("verify", str(files["bundle"]), "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    code, _, err = run("verify", str(files["few"]))
    assert code == 1 and err.count("\n") == 1 and "threshold" in err
    (tmp_path / "junk.json").write_text("{")
    code, _, err = run("verify", str(tmp_path / "junk.json"))
    assert code == 2 and err.startswith("error: unreadable:")


def test_recover_and_its_refusals(files: dict[str, Path]) -> None:
    root = files["root"]
    common = ["--key", str(files["key"]), "--passphrase-file", str(files["pass"])]
    code, out, _ = run(
        "recover", str(files["bundle"]), *common, "--out", str(root / "k.json"),
        "--sign", "00ff",
    )  # fmt: skip
    assert code == 0, out
    assert json.loads(out)["signature"]
    cases = [
        (["recover", str(files["few"]), *common, "--out", str(root / "a")], 1, "not_enough_parts"),
        (["recover", str(files["bundle"]), *common, "--out", str(root / "b"), "--epoch", "2"],
         1, "wrong_epoch"),
        (["recover", str(files["bundle"]), *common, "--out", str(root / "k.json")], 2, "exists"),
        (["recover", str(files["bundle"]), *common, "--out", str(root / "c"), "--sign", "zz"],
         2, "unreadable"),
        (["recover", str(files["bundle"]), *common, "--out", str(root / "d"),
          "--account", "user"], 2, "unreadable"),
        (["recover", str(files["bundle"]), "--key", str(files["key"]), "--out", str(root / "e")],
         2, "passphrase_unavailable"),
    ]  # fmt: skip
    for argv, expected, error in cases:
        code, _, err = run(*argv)
        assert (code, err.split(":")[1].strip()) == (expected, error), (argv, err)
        assert err.count("\n") == 1
