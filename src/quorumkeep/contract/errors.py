"""Every way the contract refuses a call: one exception class per stable error code.

The code is the class name and never changes once published: clients, the ledger's HTTP
API and the CLI match on it. Messages are one readable line and never carry secrets (the
contract holds none).
"""

from __future__ import annotations

from typing import ClassVar


class ContractError(Exception):
    """A rejected call or view. The contract's state is unchanged when one is raised."""

    code: ClassVar[str] = "ContractError"

    def __init__(self, message: str) -> None:
        # One line, whatever the caller passed in: ledger logs and CLI output stay parseable.
        self.message = " ".join(message.split())
        super().__init__(self.message)

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class NotInitialized(ContractError):
    """The contract has not been initialized yet (only `init` and views are possible)."""

    code = "NotInitialized"


class AlreadyInitialized(ContractError):
    """`init` was called on an initialized contract."""

    code = "AlreadyInitialized"


class ProtocolStateNotRunning(ContractError):
    """The method is only allowed while the protocol is Running."""

    code = "ProtocolStateNotRunning"


class InvalidState(ContractError):
    """The method does not apply to the current protocol state (other than Running-only)."""

    code = "InvalidState"


class NotParticipant(ContractError):
    """The calling account is not a participant the method accepts."""

    code = "NotParticipant"


class AlreadyParticipant(ContractError):
    """The calling account already is a participant."""

    code = "AlreadyParticipant"


class NotOperator(ContractError):
    """The method needs a full-access key of the calling account."""

    code = "NotOperator"


class SignerKeyMismatch(ContractError):
    """The transaction was not signed by the key the contract expects for this call."""

    code = "SignerKeyMismatch"


class KeyInUse(ContractError):
    """A TLS or signer key (or an address) is already used by another node."""

    code = "KeyInUse"


class KeysetMismatch(ContractError):
    """The keyset given does not equal the contract's current keyset."""

    code = "KeysetMismatch"


class MigrationNotFound(ContractError):
    """No migration is open for the calling account."""

    code = "MigrationNotFound"


class InvalidThreshold(ContractError):
    """The threshold violates 2 <= t <= n (or, for a resharing, t >= ceil(0.6 n))."""

    code = "InvalidThreshold"


class InvalidProposal(ContractError):
    """A proposal (new parameters or new domains) is not acceptable."""

    code = "InvalidProposal"


class DuplicateVote(ContractError):
    """The caller already cast this vote."""

    code = "DuplicateVote"


class InvalidKeyEvent(ContractError):
    """The key event id is unknown, stale (an aborted attempt) or already complete."""

    code = "InvalidKeyEvent"


class InvalidKeyPackage(ContractError):
    """Voted verifying shares do not name exactly the key event's participants, or do not
    interpolate to the public key."""

    code = "InvalidKeyPackage"


class InvalidSignature(ContractError):
    """The signature does not verify under the request's derived public key."""

    code = "InvalidSignature"


class PayloadSize(ContractError):
    """A sign request's payload is outside 32..1232 bytes."""

    code = "PayloadSize"


class TooManyRequests(ContractError):
    """The number of pending sign requests reached the configured maximum."""

    code = "TooManyRequests"


class DomainNotFound(ContractError):
    """No domain with that id has a public key the protocol can sign with."""

    code = "DomainNotFound"


class RequestNotFound(ContractError):
    """No pending sign request has that id."""

    code = "RequestNotFound"


class AttestationInvalid(ContractError):
    """The attestation does not verify; the message starts with the attest error code
    in brackets (``[quote_invalid]``, ``[collateral_expired]``, ``[tcb_outdated]``…)."""

    code = "AttestationInvalid"


class AttestationRequired(ContractError):
    """The call needs a valid attestation (of the caller, a newcomer or a destination)."""

    code = "AttestationRequired"


class DevAttestationRefused(ContractError):
    """A development quote given to a contract that does not allow development attestation."""

    code = "DevAttestationRefused"


class MeasurementNotAllowed(ContractError):
    """The attested measurement is not on the allow-list of the role."""

    code = "MeasurementNotAllowed"


class WouldLockOut(ContractError):
    """An allow-list or TCB policy change would leave fewer than the threshold attested."""

    code = "WouldLockOut"


class RecoveryKeyNotSet(ContractError):
    """The domain has no emergency recovery key yet (operators vote one first)."""

    code = "RecoveryKeyNotSet"


class InvalidRecoveryKey(ContractError):
    """A voted recovery key is not an RSA SubjectPublicKeyInfo the contract accepts (e =
    65537, 2048 to 8192 bits, canonical DER), or its fingerprint is not its SHA-256."""

    code = "InvalidRecoveryKey"


class InvalidRecoveryPart(ContractError):
    """A recovery part does not decode or its proof does not verify against the recovery
    key, the caller's verifying share and its label."""

    code = "InvalidRecoveryPart"


class KeyNotBackedUp(ContractError):
    """The domain's backup policy is not met: not enough operators' backup services have
    confirmed a backup of the epoch in force (the message names the missing ones)."""

    code = "KeyNotBackedUp"


class KeyProviderNotFound(ContractError):
    """The account has no registered key provider."""

    code = "KeyProviderNotFound"


class InvalidKeyProviders(ContractError):
    """A deal breaks a key-provider rule (own operator, unregistered, duplicate, stale epoch)."""

    code = "InvalidKeyProviders"


class UnknownMethod(ContractError):
    """No call or view has that name."""

    code = "UnknownMethod"


class InvalidArguments(ContractError):
    """Arguments are missing, of the wrong type, malformed or unexpected."""

    code = "InvalidArguments"


ERRORS: dict[str, type[ContractError]] = {
    cls.code: cls
    for cls in (
        NotInitialized,
        AlreadyInitialized,
        ProtocolStateNotRunning,
        InvalidState,
        NotParticipant,
        AlreadyParticipant,
        NotOperator,
        SignerKeyMismatch,
        KeyInUse,
        KeysetMismatch,
        MigrationNotFound,
        InvalidThreshold,
        InvalidProposal,
        DuplicateVote,
        InvalidKeyEvent,
        InvalidKeyPackage,
        InvalidSignature,
        PayloadSize,
        TooManyRequests,
        DomainNotFound,
        RequestNotFound,
        AttestationInvalid,
        AttestationRequired,
        DevAttestationRefused,
        MeasurementNotAllowed,
        WouldLockOut,
        RecoveryKeyNotSet,
        InvalidRecoveryKey,
        InvalidRecoveryPart,
        KeyNotBackedUp,
        KeyProviderNotFound,
        InvalidKeyProviders,
        UnknownMethod,
        InvalidArguments,
    )
}
"""Every stable error code and its class (clients rebuild typed errors from a code)."""


def error_from_code(code: str, message: str) -> ContractError:
    """The typed error for a code received over the wire (unknown codes: the base class)."""
    return ERRORS.get(code, ContractError)(message)
