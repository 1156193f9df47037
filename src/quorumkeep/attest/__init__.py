"""quorumkeep.attest: TEE quotes and what they prove — pure, time passed in.

One interface (``evidence.verify_evidence``) and two verifiers: ``tdx`` (Intel TDX DCAP
quotes checked with ``dcap-qvl`` against Intel's collateral) and ``dev`` (development
quotes signed by a local platform key, for machines without TEE hardware). ``binding``
defines report_data, ``eventlog`` the RTMR3 replay, ``policy`` the accepted TCB statuses.
docs/attestation.md specifies every format and check.
"""

from quorumkeep.attest.binding import ROLES, Role, check_binding, report_data
from quorumkeep.attest.errors import ERRORS, AttestationError
from quorumkeep.attest.evidence import (
    Attested,
    Evidence,
    Measurement,
    QuoteVerifier,
    verify_evidence,
    verify_quote,
)
from quorumkeep.attest.policy import STRICT, TcbPolicy
from quorumkeep.attest.report import QuoteReport

__all__ = [
    "ERRORS",
    "ROLES",
    "STRICT",
    "AttestationError",
    "Attested",
    "Evidence",
    "Measurement",
    "QuoteReport",
    "QuoteVerifier",
    "Role",
    "TcbPolicy",
    "check_binding",
    "report_data",
    "verify_evidence",
    "verify_quote",
]
