"""`quorumkeep crypto frost-vector` and the pure function behind it."""

from __future__ import annotations

import copy
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.bindings import crypto_scalarmult_ed25519_base_noclamp
from nacl.signing import VerifyKey

from quorumkeep.crypto.vectors import InvalidVector, frost_vector

VECTOR = Path(__file__).parents[1] / "vectors" / "frost-ed25519-sha512-rfc9591.json"
CLI = Path(sys.executable).parent / "quorumkeep"
L = 2**252 + 27742317777372353535851937790883648493


def run_cli(path: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(CLI), "crypto", "frost-vector", str(path)], capture_output=True, timeout=60
    )


def blank_outputs(vector: dict[str, Any]) -> dict[str, Any]:
    """Keep only what the command may read; every computed value becomes ""."""
    blank = copy.deepcopy(vector)
    blank["inputs"]["group_public_key"] = ""
    for share in blank["inputs"]["participant_shares"]:
        share["participant_share"] = ""
    for out in blank["round_one_outputs"]["outputs"]:
        for key in (
            "hiding_nonce",
            "binding_nonce",
            "hiding_nonce_commitment",
            "binding_nonce_commitment",
            "binding_factor_input",
            "binding_factor",
        ):
            out[key] = ""
    for out in blank["round_two_outputs"]["outputs"]:
        out["sig_share"] = ""
    blank["final_output"]["sig"] = ""
    for key in ("MAX_PARTICIPANTS", "NUM_PARTICIPANTS", "MIN_PARTICIPANTS"):
        blank["config"][key] = ""
    return blank


def random_vector_inputs(seed: int) -> tuple[dict[str, Any], int, list[int], list[int]]:
    """A fresh vector's inputs (outputs blank) with another t, n, ids and message."""
    rng = random.Random(seed)
    n = rng.randint(3, 9)
    t = rng.randint(2, n)
    identifiers = sorted(rng.sample([*range(1, 300), 2**32 - 1, 2**40 + 7], n))
    signers = sorted(rng.sample(identifiers, rng.randint(t, n)))
    secret = rng.randrange(1, L)
    coefficients = [rng.randrange(L) for _ in range(t - 1)]

    def hex32(v: int) -> str:
        return v.to_bytes(32, "little").hex()

    vector = {
        "config": {
            "MAX_PARTICIPANTS": "",
            "NUM_PARTICIPANTS": "",
            "MIN_PARTICIPANTS": "",
            "name": "FROST(Ed25519, SHA-512)",
            "group": "ed25519",
            "hash": "SHA-512",
        },
        "inputs": {
            "participant_list": signers,
            "group_secret_key": hex32(secret),
            "group_public_key": "",
            "message": rng.randbytes(rng.randint(0, 80)).hex(),
            "share_polynomial_coefficients": [hex32(c) for c in coefficients],
            "participant_shares": [{"identifier": i, "participant_share": ""} for i in identifiers],
        },
        "round_one_outputs": {
            "outputs": [
                {
                    "identifier": i,
                    "hiding_nonce_randomness": rng.randbytes(32).hex(),
                    "binding_nonce_randomness": rng.randbytes(32).hex(),
                    "hiding_nonce": "",
                    "binding_nonce": "",
                    "hiding_nonce_commitment": "",
                    "binding_nonce_commitment": "",
                    "binding_factor_input": "",
                    "binding_factor": "",
                }
                for i in signers
            ]
        },
        "round_two_outputs": {"outputs": [{"identifier": i, "sig_share": ""} for i in signers]},
        "final_output": {"sig": ""},
    }
    return vector, secret, coefficients, identifiers


def test_pure_function_reproduces_the_rfc_vector() -> None:
    text = VECTOR.read_text()
    vector = json.loads(text)
    assert frost_vector(blank_outputs(vector)) == vector
    assert json.dumps(frost_vector(vector), indent=2) == text.rstrip("\n")


@pytest.mark.slow
def test_cli_reproduces_the_rfc_file_byte_for_byte(tmp_path: Path) -> None:
    done = run_cli(VECTOR)
    assert done.returncode == 0, done.stderr
    assert done.stdout == VECTOR.read_bytes()
    # from inputs only, and with the other newline convention
    blank = tmp_path / "blank.json"
    blank.write_text(json.dumps(blank_outputs(json.loads(VECTOR.read_text())), indent=2) + "\n")
    done = run_cli(blank)
    assert done.returncode == 0, done.stderr
    assert done.stdout == VECTOR.read_bytes() + b"\n"


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.slow
def test_cli_completes_a_fresh_random_vector(tmp_path: Path, seed: int) -> None:
    vector, secret, coefficients, identifiers = random_vector_inputs(seed)
    path = tmp_path / "fresh.json"
    path.write_text(json.dumps(vector, indent=2))
    done = run_cli(path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)

    # independent checks: Shamir shares by plain integer arithmetic, keys and
    # signature by libsodium's and OpenSSL's Ed25519
    group_public_key = bytes.fromhex(result["inputs"]["group_public_key"])
    assert group_public_key == crypto_scalarmult_ed25519_base_noclamp(secret.to_bytes(32, "little"))
    for share in result["inputs"]["participant_shares"]:
        x = share["identifier"]
        expected = (secret + sum(c * x ** (k + 1) for k, c in enumerate(coefficients))) % L
        assert share["participant_share"] == expected.to_bytes(32, "little").hex()
    config = result["config"]
    assert config["MAX_PARTICIPANTS"] == str(len(identifiers))
    assert config["MIN_PARTICIPANTS"] == str(len(coefficients) + 1)
    assert config["NUM_PARTICIPANTS"] == str(len(vector["inputs"]["participant_list"]))
    message = bytes.fromhex(result["inputs"]["message"])
    signature = bytes.fromhex(result["final_output"]["sig"])
    VerifyKey(group_public_key).verify(message, signature)
    Ed25519PublicKey.from_public_bytes(group_public_key).verify(signature, message)
    assert list(result) == list(json.loads(VECTOR.read_text()))

    # the completed vector is a fixed point of the command, byte for byte
    path.write_bytes(done.stdout)
    again = run_cli(path)
    assert again.returncode == 0 and again.stdout == done.stdout


def _rfc() -> dict[str, Any]:
    return json.loads(VECTOR.read_text())


def _edit(path: list[Any], value: Any) -> dict[str, Any]:
    vector = _rfc()
    target: Any = vector
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return vector


MALFORMED = {
    "no inputs": (["inputs"], KeyError),
    "inputs not an object": (["inputs"], 3),
    "bad hex": (["inputs", "group_secret_key"], "zz" * 32),
    "odd hex": (["inputs", "message"], "abc"),
    "short key": (["inputs", "group_secret_key"], "00" * 31),
    "non-canonical secret": (["inputs", "group_secret_key"], (L).to_bytes(32, "little").hex()),
    "zero secret": (["inputs", "group_secret_key"], "00" * 32),
    "non-canonical coefficient": (
        ["inputs", "share_polynomial_coefficients", 0],
        (2**256 - 1).to_bytes(32, "little").hex(),
    ),
    "identifier zero": (["inputs", "participant_shares", 0, "identifier"], 0),
    "identifier not int": (["inputs", "participant_shares", 0, "identifier"], "1"),
    "duplicate share ids": (["inputs", "participant_shares", 1, "identifier"], 1),
    "signer without share": (["inputs", "participant_shares", 2, "identifier"], 4),
    "unsorted signers": (["inputs", "participant_list"], [3, 1]),
    "too few signers": (["inputs", "participant_list"], [1]),
    "round one mismatch": (["round_one_outputs", "outputs", 1, "identifier"], 2),
    "short randomness": (["round_one_outputs", "outputs", 0, "hiding_nonce_randomness"], "00"),
    "no randomness": (["round_one_outputs", "outputs", 0, "binding_nonce_randomness"], KeyError),
    "other ciphersuite": (["config", "name"], "FROST(ristretto255, SHA-512)"),
    "no threshold": (["inputs", "share_polynomial_coefficients"], []),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_vectors_are_refused(case: str) -> None:
    path, value = MALFORMED[case]
    with pytest.raises(InvalidVector):
        frost_vector(_edit(path, value))


def test_non_object_vector_is_refused() -> None:
    with pytest.raises(InvalidVector):
        frost_vector([])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "content",
    [
        b"{",
        b"[]",
        json.dumps(_edit(["inputs", "group_secret_key"], "zz")).encode(),
        json.dumps(_edit(["inputs", "participant_list"], [1])).encode(),
        b"\xff\xfe",
    ],
    ids=["not-json", "not-object", "bad-hex", "too-few-signers", "not-utf8"],
)
@pytest.mark.slow
def test_cli_reports_malformed_input_on_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    done = run_cli(path)
    assert done.returncode == 2
    assert done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in done.stderr.decode()


@pytest.mark.slow
def test_cli_reports_a_missing_file(tmp_path: Path) -> None:
    done = run_cli(tmp_path / "absent.json")
    assert done.returncode == 2
    assert done.stderr.decode().strip().startswith("error: cannot read")
