"""Pydantic models of the HTTP API, for /openapi.json.

Requests are parsed and validated by ``quorumkeep.ledger.transaction`` (one parser for the
wire, the block log and replay); these models only describe the same shapes to readers of
the OpenAPI document. A test checks that what the client sends validates against them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from quorumkeep.encoding.fields import ACCOUNT_PATTERN

HEX32 = r"^[0-9a-f]{64}$"
HEX64 = r"^[0-9a-f]{128}$"
ACCOUNT = ACCOUNT_PATTERN.pattern
METHOD = r"^[a-z][a-z0-9_]{0,63}$"
MAX_SAFE_INTEGER = 2**53 - 1
MAX_HEIGHT = 2**63 - 1


def _ijson(depth: int) -> dict[str, Any]:
    """An I-JSON value nested at most ``depth`` more levels (no recursion: generators and
    simple validators handle a finite schema; the server allows 32 levels)."""
    leaves: list[dict[str, Any]] = [
        {"type": "null"},
        {"type": "boolean"},
        {"type": "integer", "minimum": -MAX_SAFE_INTEGER, "maximum": MAX_SAFE_INTEGER},
        {"type": "string"},
    ]
    if depth == 0:
        return {"anyOf": leaves}
    inner = _ijson(depth - 1)
    return {
        "anyOf": [
            *leaves,
            {"type": "array", "items": inner},
            {"type": "object", "additionalProperties": inner},
        ]
    }


IJSON_OBJECT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": _ijson(3),
    "description": "I-JSON object: no floats, integers within ±(2^53-1), strings of valid "
    "Unicode, at most 32 levels deep (this schema spells out 4)",
}
IJsonObject = Annotated[dict[str, Any], WithJsonSchema(IJSON_OBJECT)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FunctionCallBody(_Strict):
    method: str = Field(pattern=METHOD)
    args: IJsonObject


class FunctionCallAction(_Strict):
    function_call: FunctionCallBody


MethodName = Annotated[str, Field(pattern=METHOD)]


class FunctionCallPermission(_Strict):
    function_call: list[MethodName] = Field(
        min_length=1, max_length=64, json_schema_extra={"uniqueItems": True}
    )


class AddKeyBody(_Strict):
    public_key: str = Field(pattern=HEX32, description="a valid Ed25519 point")
    permission: Literal["full"] | FunctionCallPermission


class AddKeyAction(_Strict):
    add_key: AddKeyBody


class DeleteKeyBody(_Strict):
    public_key: str = Field(pattern=HEX32)


class DeleteKeyAction(_Strict):
    delete_key: DeleteKeyBody


class TransactionModel(_Strict):
    """Besides what the schema states: at most one ``function_call`` action per transaction,
    and every public key a valid Ed25519 point."""

    chain_id: str = Field(pattern=HEX32, description="hash of the genesis block")
    signer_account: str = Field(pattern=ACCOUNT)
    public_key: str = Field(
        pattern=HEX32, description="the access key that signs (a valid Ed25519 point)"
    )
    nonce: int = Field(ge=1, le=2**53 - 1, description="above the key's current nonce")
    block_height: int = Field(ge=0, le=2**53 - 1, description="a recent committed height")
    actions: list[FunctionCallAction | AddKeyAction | DeleteKeyAction] = Field(
        min_length=1, max_length=16
    )


class SignedTransactionModel(_Strict):
    transaction: TransactionModel
    signature: str = Field(pattern=HEX64, description="Ed25519 over the signing bytes")


class ViewRequest(_Strict):
    method: str = Field(description="a view name (docs/contract.md); another is UnknownMethod")
    args: IJsonObject = Field(default_factory=dict)


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class EventModel(BaseModel):
    height: int
    index: int
    tx_hash: str | None
    kind: str
    data: dict[str, Any]


class ReceiptResponse(BaseModel):
    tx_hash: str
    block_height: int
    status: Literal["success", "failure"]
    value: Any = None
    events: list[dict[str, Any]]
    error: ErrorBody | None = None


class ViewResponse(BaseModel):
    value: Any
    block_height: int


class AccessKeyModel(BaseModel):
    public_key: str
    permission: Literal["full"] | FunctionCallPermission
    nonce: int


class AccountResponse(BaseModel):
    account: str
    block_height: int
    keys: list[AccessKeyModel]


class EventsResponse(BaseModel):
    events: list[EventModel]
    next: int = Field(description="pass as `since` on the next call")


class StatusResponse(BaseModel):
    chain_id: str
    height: int
    head_hash: str
    timestamp_ms: int
    tx_validity_blocks: int
    idle_block_ms: int
    pending_transactions: int


class TransactionResponse(BaseModel):
    tx_hash: str
    block_height: int
    transaction: TransactionModel
    signature: str
    outcome: dict[str, Any]


class HealthResponse(BaseModel):
    status: str
    height: int


REQUEST_MODELS: dict[str, type[BaseModel]] = {
    "/v1/transactions": SignedTransactionModel,
    "/v1/view": ViewRequest,
}
