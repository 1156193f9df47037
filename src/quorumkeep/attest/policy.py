"""Which TCB statuses are accepted.

The default accepts ``UpToDate`` only. A wider policy must list every advisory it
accepts by id: a quote whose status is not ``UpToDate`` passes only when its status is
listed and each of its advisory ids is too, so widening the policy for one advisory does
not silently accept the next one Intel publishes. ``Revoked`` is never acceptable, and the
``OutOfDate`` family is refused as ``tcb_outdated`` so an operator can tell "patch the
platform" from "the network's policy does not cover this".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quorumkeep.attest.errors import TcbNotAllowed, TcbOutdated
from quorumkeep.attest.report import TCB_STATUSES, TCB_UP_TO_DATE

NEVER_ACCEPTED = frozenset({"Revoked"})
OUT_OF_DATE = frozenset({"OutOfDate", "OutOfDateConfigurationNeeded"})
MAX_ADVISORIES = 64


@dataclass(frozen=True)
class TcbPolicy:
    statuses: frozenset[str] = frozenset({TCB_UP_TO_DATE})
    advisory_ids: frozenset[str] = field(default_factory=frozenset)

    def problem(self) -> str | None:
        """Why this policy may not be adopted, or None."""
        if TCB_UP_TO_DATE not in self.statuses:
            return "a TCB policy always accepts UpToDate"
        unknown = sorted(self.statuses - TCB_STATUSES)
        if unknown:
            return f"unknown TCB status(es) {', '.join(unknown)}"
        refused = sorted(self.statuses & NEVER_ACCEPTED)
        if refused:
            return f"{', '.join(refused)} can never be accepted"
        if len(self.advisory_ids) > MAX_ADVISORIES:
            return f"at most {MAX_ADVISORIES} advisory ids"
        for a in self.advisory_ids:
            if not (a.startswith("INTEL-SA-") and 9 < len(a) <= 20 and a[9:].isdigit()):
                return f"advisory id {a[:24]!r} is not of the form INTEL-SA-NNNNN"
        return None

    def check(self, tcb_status: str, advisory_ids: tuple[str, ...]) -> None:
        """TcbOutdated / TcbNotAllowed unless the status and its advisories are accepted."""
        if tcb_status == TCB_UP_TO_DATE:
            return
        if tcb_status in OUT_OF_DATE and tcb_status not in self.statuses:
            raise TcbOutdated(f"the platform's TCB is {tcb_status} ({_ids(advisory_ids)})")
        if tcb_status not in self.statuses:
            raise TcbNotAllowed(
                f"TCB status {tcb_status} ({_ids(advisory_ids)}) is not accepted; "
                f"the policy accepts {', '.join(sorted(self.statuses))}"
            )
        missing = sorted(set(advisory_ids) - self.advisory_ids)
        if missing:
            raise TcbNotAllowed(
                f"TCB status {tcb_status} with advisory id(s) {', '.join(missing)} "
                "that the policy does not list"
            )

    def to_json(self) -> dict[str, Any]:
        return {"statuses": sorted(self.statuses), "advisory_ids": sorted(self.advisory_ids)}


def _ids(advisory_ids: tuple[str, ...]) -> str:
    return ", ".join(advisory_ids) if advisory_ids else "no advisories"


STRICT = TcbPolicy()
