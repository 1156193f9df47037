"""Errors the protocol runs raise. Each has a stable ``code``; messages hold no secrets."""

from __future__ import annotations

from collections.abc import Iterable


class ProtocolError(Exception):
    """Base of every protocol failure."""

    code = "protocol_error"
    from_peer = False
    """True when the error reports another participant's abort (it is not re-broadcast)."""


class InvalidSessionParameters(ProtocolError, ValueError):
    """The caller's inputs are inconsistent (sets, thresholds, missing key material)."""

    code = "invalid_parameters"


class ProtocolTimeout(ProtocolError):
    """Some participants did not send what the current stage needs in time."""

    code = "timeout"

    def __init__(self, stage: str, missing: Iterable[int]) -> None:
        self.stage = stage
        self.missing = tuple(sorted(missing))
        super().__init__(f"{stage}: no message within the time limit from {list(self.missing)}")


class ParticipantMisbehaved(ProtocolError):
    """A named participant sent something that fails verification, or equivocated.

    ``reported_by`` is set when another participant made the accusation (an abort or a
    diverging echo); without transferable signatures it cannot be proven to us, which is why
    the session aborts instead of continuing without the accused.
    """

    code = "cheater_detected"

    def __init__(self, culprit: int, reason: str, *, reported_by: int | None = None) -> None:
        self.culprit = culprit
        self.reason = reason
        self.reported_by = reported_by
        by = "" if reported_by is None else f" (reported by participant {reported_by})"
        super().__init__(f"participant {culprit}: {reason}{by}")


class SessionAborted(ProtocolError):
    """Another participant aborted the session without naming a culprit (e.g. its timeout)."""

    code = "aborted"

    def __init__(self, by: int, reason: str) -> None:
        self.by = by
        self.reason = reason
        super().__init__(f"participant {by} aborted the session: {reason}")


class SigningFailed(ProtocolError):
    """The leader could not produce a signature for a request within its attempts and time."""

    code = "signing_failed"

    def __init__(self, reason: str, *, cheaters: Iterable[int] = ()) -> None:
        self.reason = reason
        self.cheaters = tuple(sorted(set(cheaters)))
        suffix = f"; misbehaving signers: {list(self.cheaters)}" if self.cheaters else ""
        super().__init__(reason + suffix)


class NoPresignature(SigningFailed):
    """No presignature whose members are all connected (and not excluded) is available."""

    code = "no_presignature"
