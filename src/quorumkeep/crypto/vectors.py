"""Recompute a FROST(Ed25519, SHA-512) test vector in the CFRG JSON layout (RFC 9591 App. E).

``frost_vector`` reads only a vector's inputs — ``group_secret_key``,
``share_polynomial_coefficients``, the identifiers of ``participant_shares`` (their values
are ignored and may be empty), ``participant_list``, ``message`` and each round-one
entry's ``hiding_nonce_randomness`` / ``binding_nonce_randomness`` — and returns the whole
vector with every other value recomputed, keys in the RFC file's order. Serialized with
``json.dumps(..., indent=2)`` the result is the RFC file byte for byte, so a vector
produced elsewhere can be checked by comparing bytes.

Pure: dict in, dict out; malformed input raises ``InvalidVector`` with the JSON path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from itertools import pairwise
from typing import Any

from quorumkeep.crypto import frost, group
from quorumkeep.crypto.errors import CryptoError, InvalidParameters
from quorumkeep.crypto.keys import trusted_dealer_keygen
from quorumkeep.encoding.fields import decode_hex

CIPHERSUITE = {"name": "FROST(Ed25519, SHA-512)", "group": "ed25519", "hash": "SHA-512"}


class InvalidVector(InvalidParameters):
    """The vector is not a well-formed FROST(Ed25519, SHA-512) vector; says where."""


def _object(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidVector(f"{path}: expected an object")
    return value


def _field(obj: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in obj:
        raise InvalidVector(f"{path}.{key}: missing")
    return obj[key]


def _list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidVector(f"{path}: expected a list")
    return value


def _identifier(value: object, path: str) -> int:
    if type(value) is not int or not 1 <= value < group.ORDER:
        raise InvalidVector(f"{path}: expected an integer identifier in [1, L)")
    return value


def _hex(value: object, path: str, size: int | None = None) -> bytes:
    try:  # published vectors may spell hex in either case
        data = decode_hex(value.lower() if isinstance(value, str) else value)
    except ValueError:
        raise InvalidVector(f"{path}: expected a hex string") from None
    if size is not None and len(data) != size:
        raise InvalidVector(f"{path}: expected {size} bytes, got {len(data)}")
    return data


def _scalar(value: object, path: str) -> group.Scalar:
    data = _hex(value, path, group.SCALAR_SIZE)
    if group.scalar_to_int(data) >= group.ORDER:
        raise InvalidVector(f"{path}: scalar is not canonical (>= group order)")
    return data


def _replay(chunks: list[bytes]) -> Callable[[int], bytes]:
    """A random_bytes that hands out the vector's recorded randomness, in order."""
    remaining: Iterator[bytes] = iter(chunks)

    def random_bytes(n: int) -> bytes:
        chunk = next(remaining)
        if len(chunk) != n:
            raise InvalidVector(f"recorded randomness has {len(chunk)} bytes, {n} requested")
        return chunk

    return random_bytes


def _no_randomness(n: int) -> bytes:
    raise InvalidVector("the vector must fix every random value")


def _check_config(vector: Mapping[str, Any]) -> None:
    config = vector.get("config")
    if config is None:
        return
    config = _object(config, "config")
    for key, expected in CIPHERSUITE.items():
        if key in config and config[key] != expected:
            raise InvalidVector(f"config.{key}: this tool only handles {expected!r}")


def frost_vector(vector: Mapping[str, Any]) -> dict[str, Any]:
    """The complete vector recomputed from ``vector``'s inputs (see the module doc)."""
    vector = _object(vector, "vector")
    _check_config(vector)
    inputs = _object(_field(vector, "inputs", "vector"), "inputs")

    participant_list = [
        _identifier(v, f"inputs.participant_list[{k}]")
        for k, v in enumerate(
            _list(_field(inputs, "participant_list", "inputs"), "inputs.participant_list")
        )
    ]
    secret = _scalar(_field(inputs, "group_secret_key", "inputs"), "inputs.group_secret_key")
    if secret == group.ZERO:
        raise InvalidVector("inputs.group_secret_key: must not be zero")
    message = _hex(_field(inputs, "message", "inputs"), "inputs.message")
    coefficients = [
        _scalar(v, f"inputs.share_polynomial_coefficients[{k}]")
        for k, v in enumerate(
            _list(
                _field(inputs, "share_polynomial_coefficients", "inputs"),
                "inputs.share_polynomial_coefficients",
            )
        )
    ]
    share_identifiers = []
    for k, entry in enumerate(
        _list(_field(inputs, "participant_shares", "inputs"), "inputs.participant_shares")
    ):
        path = f"inputs.participant_shares[{k}]"
        share_identifiers.append(
            _identifier(_field(_object(entry, path), "identifier", path), f"{path}.identifier")
        )

    round_one = _object(_field(vector, "round_one_outputs", "vector"), "round_one_outputs")
    randomness: dict[int, list[bytes]] = {}
    signers: list[int] = []
    for k, entry in enumerate(
        _list(_field(round_one, "outputs", "round_one_outputs"), "round_one_outputs.outputs")
    ):
        path = f"round_one_outputs.outputs[{k}]"
        entry = _object(entry, path)
        identifier = _identifier(_field(entry, "identifier", path), f"{path}.identifier")
        signers.append(identifier)
        randomness[identifier] = [
            _hex(_field(entry, key, path), f"{path}.{key}", 32)
            for key in ("hiding_nonce_randomness", "binding_nonce_randomness")
        ]

    threshold = len(coefficients) + 1
    if any(b <= a for a, b in pairwise(participant_list)):
        raise InvalidVector("inputs.participant_list: must be strictly ascending")
    if signers != participant_list:
        raise InvalidVector(
            "round_one_outputs.outputs: identifiers must be inputs.participant_list, in order"
        )
    unknown = sorted(set(participant_list) - set(share_identifiers))
    if unknown:
        raise InvalidVector(f"inputs.participant_list: {unknown} hold no participant share")
    if len(participant_list) < threshold:
        raise InvalidVector(
            f"inputs.participant_list: {len(participant_list)} signers, "
            f"fewer than MIN_PARTICIPANTS = {threshold}"
        )

    try:
        packages, public, _ = trusted_dealer_keygen(
            secret, threshold, share_identifiers, _no_randomness, coefficients=coefficients
        )
    except InvalidVector:
        raise
    except CryptoError as exc:
        raise InvalidVector(f"inputs: {exc}") from None
    group_public_key = public.group_public_key

    nonces: dict[int, frost.SigningNonces] = {}
    commitments: dict[int, frost.SigningCommitments] = {}
    for identifier in participant_list:
        nonces[identifier], commitments[identifier] = frost.commit(
            packages[identifier].signing_share, _replay(randomness[identifier])
        )
    commitment_list = frost.commitment_list_from(commitments)
    rho_inputs = dict(
        frost.compute_binding_factor_inputs(group_public_key, commitment_list, message)
    )
    binding_factors = dict(
        frost.compute_binding_factors(group_public_key, commitment_list, message)
    )
    sig_shares = {
        identifier: frost.sign(
            identifier,
            packages[identifier].signing_share,
            group_public_key,
            nonces[identifier],
            message,
            commitment_list,
        )
        for identifier in participant_list
    }
    signature = frost.aggregate(
        commitment_list,
        message,
        group_public_key,
        sig_shares,
        verifying_shares=public.verifying_shares,
    )

    return {
        "config": {
            "MAX_PARTICIPANTS": str(len(share_identifiers)),
            "NUM_PARTICIPANTS": str(len(participant_list)),
            "MIN_PARTICIPANTS": str(threshold),
            **CIPHERSUITE,
        },
        "inputs": {
            "participant_list": participant_list,
            "group_secret_key": secret.hex(),
            "group_public_key": group_public_key.hex(),
            "message": message.hex(),
            "share_polynomial_coefficients": [c.hex() for c in coefficients],
            "participant_shares": [
                {"identifier": i, "participant_share": packages[i].signing_share.hex()}
                for i in share_identifiers
            ],
        },
        "round_one_outputs": {
            "outputs": [
                {
                    "identifier": i,
                    "hiding_nonce_randomness": randomness[i][0].hex(),
                    "binding_nonce_randomness": randomness[i][1].hex(),
                    "hiding_nonce": nonces[i].hiding.hex(),
                    "binding_nonce": nonces[i].binding.hex(),
                    "hiding_nonce_commitment": commitments[i].hiding.hex(),
                    "binding_nonce_commitment": commitments[i].binding.hex(),
                    "binding_factor_input": rho_inputs[i].hex(),
                    "binding_factor": binding_factors[i].hex(),
                }
                for i in participant_list
            ]
        },
        "round_two_outputs": {
            "outputs": [
                {"identifier": i, "sig_share": sig_shares[i].hex()} for i in participant_list
            ]
        },
        "final_output": {"sig": signature.hex()},
    }
