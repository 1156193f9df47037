"""quorumkeep: a threshold-signing network whose operators never lose the signing key."""

import sys as _sys

__version__ = "0.1.0"

# httpx imports its own command-line client (click, rich, pygments: about 90 ms of CPU)
# whenever those happen to be installed, as Typer's dependencies are here; quorumkeep never
# runs it. A ``None`` entry makes that optional import fail the way httpx expects (it then
# defines a stub ``httpx.main``), which every quorumkeep process - node, ledger, backup
# service, each CLI call - would otherwise pay for at start.
_sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
