"""Transaction encoding, signing and parsing (the vector is the one in docs/ledger.md)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumkeep.ledger.canonical import NotCanonical, canonical_json, check_ijson, parse_json
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.ledger.transaction import (
    FULL_ACCESS,
    TX_DOMAIN,
    AddKey,
    DeleteKey,
    FunctionCall,
    Permission,
    SignedTransaction,
    Transaction,
)

SEED = bytes(range(32))
KEY = nacl.signing.SigningKey(SEED)
PUBLIC = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
CHAIN = bytes(range(32))

VECTOR_MESSAGE = (
    b'quorumkeep-tx-v1\x00{"actions":[{"function_call":{"args":{"domain_id":0,'
    b'"path":"\xc3\xa9/1","payload":"abababababababababababababababab"},"method":"sign"}}],'
    b'"block_height":7,'
    b'"chain_id":"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",'
    b'"nonce":3,'
    b'"public_key":"03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8",'
    b'"signer_account":"alice"}'
)
VECTOR_SIGNATURE = (
    "a7bb44403053cd8f21d88948cf96b79f01c8dc2cfe45f3fc14943a93016184d5"
    "cc05832c908251a36524ebd08653b056cb8be5a9f113e8f837316ba752fbe901"
)
VECTOR_HASH = "bc909700485cf4dc77fbb912d4b1557877391f1f66010ef024515758c54a7df1"


def vector_tx(**overrides: Any) -> Transaction:
    fields: dict[str, Any] = {
        "chain_id": CHAIN,
        "signer_account": "alice",
        "public_key": bytes(KEY.verify_key),
        "nonce": 3,
        "block_height": 7,
        "actions": (FunctionCall("sign", {"payload": "ab" * 16, "path": "é/1", "domain_id": 0}),),
    }
    fields.update(overrides)
    return Transaction(**fields)


def test_signing_bytes_vector() -> None:
    assert bytes(KEY.verify_key).hex() == PUBLIC
    signed = vector_tx().sign(KEY)
    assert signed.message == VECTOR_MESSAGE
    assert signed.message.startswith(TX_DOMAIN)
    assert signed.signature.hex() == VECTOR_SIGNATURE
    assert signed.hash.hex() == VECTOR_HASH == hashlib.sha256(VECTOR_MESSAGE).hexdigest()
    signed.verify()


def test_wire_round_trip_keeps_the_signature_valid() -> None:
    signed = vector_tx().sign(KEY)
    wire = json.loads(json.dumps(signed.to_json(), indent=3))  # any JSON formatting
    parsed = SignedTransaction.from_json(wire)
    assert parsed.message == signed.message
    assert parsed.hash == signed.hash
    parsed.verify()


@pytest.mark.parametrize(
    "change",
    [
        {"nonce": 4},
        {"block_height": 8},
        {"signer_account": "bob"},
        {"chain_id": bytes(32)},
        {"actions": (FunctionCall("sign", {"payload": "ab" * 16}),)},
    ],
)
def test_signature_covers_every_field(change: dict[str, Any]) -> None:
    signed = vector_tx().sign(KEY)
    other = vector_tx(**change)
    moved = SignedTransaction(other, signed.signature, other.signing_bytes())
    with pytest.raises(LedgerError) as info:
        moved.verify()
    assert info.value.code == "InvalidSignature"


def test_sign_refuses_a_key_that_is_not_the_transactions() -> None:
    with pytest.raises(ValueError):
        vector_tx().sign(nacl.signing.SigningKey(bytes(32)))


def test_key_actions_encoding() -> None:
    pk = bytes(KEY.verify_key)
    tx = vector_tx(
        actions=(
            AddKey(pk, Permission(("vote_pk", "respond", "respond"))),
            AddKey(pk, FULL_ACCESS),
            DeleteKey(pk),
        )
    )
    assert tx.to_json()["actions"] == [
        {
            "add_key": {
                "public_key": PUBLIC,
                "permission": {"function_call": ["respond", "vote_pk"]},
            }
        },
        {"add_key": {"public_key": PUBLIC, "permission": "full"}},
        {"delete_key": {"public_key": PUBLIC}},
    ]
    assert Transaction.from_json(tx.to_json()) == tx


def _wire(**changes: Any) -> dict[str, Any]:
    body = vector_tx().to_json()
    body.update(changes)
    return body


@pytest.mark.parametrize(
    "body",
    [
        _wire(nonce="3"),
        _wire(nonce=True),
        _wire(nonce=0),
        _wire(nonce=2**53),
        _wire(block_height=-1),
        _wire(chain_id="AB" * 32),
        _wire(chain_id="ab" * 31),
        _wire(public_key=PUBLIC.upper()),
        _wire(signer_account="Alice"),
        _wire(signer_account="a"),
        _wire(actions=[]),
        _wire(actions=[{"delete_key": {"public_key": PUBLIC}}] * 17),
        _wire(actions=[{"function_call": {"method": "sign", "args": {}}}] * 2),
        _wire(actions=[{"function_call": {"method": "sign", "args": {"x": 1.0}}}]),
        _wire(actions=[{"function_call": {"method": "sign", "args": {"x": 2**60}}}]),
        _wire(actions=[{"function_call": {"method": "sign", "args": {"x": "\ud800"}}}]),
        _wire(actions=[{"function_call": {"method": "sign", "args": []}}]),
        _wire(actions=[{"function_call": {"method": "Sign", "args": {}}}]),
        _wire(actions=[{"function_call": {"method": "sign"}}]),
        _wire(actions=[{"transfer": {}}]),
        _wire(actions=[{"delete_key": {"public_key": PUBLIC}, "add_key": {}}]),
        _wire(actions=[{"delete_key": {"public_key": "00" * 32}}]),  # small-order point
        _wire(actions=[{"add_key": {"public_key": PUBLIC, "permission": "partial"}}]),
        _wire(actions=[{"add_key": {"public_key": PUBLIC, "permission": {"function_call": []}}}]),
        _wire(memo="x"),
        {"chain_id": CHAIN.hex()},
    ],
)
def test_malformed_transactions_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(LedgerError) as info:
        Transaction.from_json(body)
    assert info.value.code == "InvalidTransaction"
    assert info.value.status == 400
    assert "\n" not in info.value.message


def test_signed_transaction_needs_a_64_byte_signature() -> None:
    body = vector_tx().sign(KEY).to_json()
    body["signature"] = body["signature"][:-2]
    with pytest.raises(LedgerError):
        SignedTransaction.from_json(body)


def test_parse_json_is_strict() -> None:
    with pytest.raises(NotCanonical):
        parse_json('{"a": 1, "a": 2}')
    with pytest.raises(NotCanonical):
        parse_json('{"a": NaN}')
    with pytest.raises(ValueError):
        parse_json("{")
    assert parse_json('{"b": [1, {"c": null}]}') == {"b": [1, {"c": None}]}


def test_canonical_json_bytes() -> None:
    assert canonical_json({"b": 1, "a": ["é", "\n", True, None]}) == (
        b'{"a":["\xc3\xa9","\\n",true,null],"b":1}'
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.text(st.characters(codec="utf-8"), max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=6), inner)
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(args=st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=6), json_values))
def test_any_ijson_args_round_trip_to_the_same_signed_bytes(args: dict[str, Any]) -> None:
    check_ijson(args)
    signed = vector_tx(actions=(FunctionCall("sign", args),)).sign(KEY)
    again = SignedTransaction.from_json(parse_json(json.dumps(signed.to_json())))
    assert again.message == signed.message
    again.verify()
