"""`quorumkeep attest …`: verify a TEE quote offline, and the TCB early warning."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from quorumkeep.attest.errors import AttestationError
from quorumkeep.attest.eventlog import parse_event_log
from quorumkeep.attest.evidence import Evidence, verify_quote
from quorumkeep.attest.inspect import quote_from_file_bytes, tcb_check
from quorumkeep.attest.policy import TcbPolicy

app = typer.Typer(no_args_is_help=True, help="TEE attestation: verify quotes, check TCB status")

EXIT_REFUSED = 1
EXIT_USAGE = 2


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=EXIT_USAGE)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror or exc}") from None


def _policy(statuses: list[str], advisories: list[str]) -> TcbPolicy:
    policy = TcbPolicy(frozenset({"UpToDate", *statuses}), frozenset(advisories))
    problem = policy.problem()
    if problem is not None:
        raise _fail(f"policy: {problem}")
    return policy


def _inputs(quote: Path, collateral: Path | None) -> tuple[bytes, str | None]:
    try:
        raw = quote_from_file_bytes(_read(quote))
    except AttestationError as exc:
        raise _fail(f"{quote}: {exc.message}") from None
    text = None
    if collateral is not None:
        try:
            text = _read(collateral).decode("utf-8")
            json.loads(text)
        except (UnicodeDecodeError, ValueError):
            raise _fail(f"{collateral} is not JSON") from None
    return raw, text


QUOTE = typer.Option(..., "--quote", help="Quote file: raw bytes or hex.")
NOW = typer.Option(None, "--now", help="Unix time to verify at (default: this machine's clock).")
JSON = typer.Option(False, "--json", help="Print one JSON object.")
ALLOW_STATUS = typer.Option([], "--allow-status", help="Also accept this TCB status.")
ALLOW_ADVISORY = typer.Option([], "--allow-advisory", help="Accept this advisory id.")


@app.command("verify")
def verify_command(
    quote: Path = QUOTE,
    collateral: Path | None = typer.Option(
        None, "--collateral", help="dcap-qvl collateral JSON (TDX quotes)."
    ),
    event_log: Path | None = typer.Option(None, "--event-log", help="dstack event log JSON."),
    dev_platform_key: str | None = typer.Option(
        None, "--dev-platform-key", help="Hex Ed25519 key: accept development quotes by it."
    ),
    now: int | None = NOW,
    as_json: bool = JSON,
    allow_status: list[str] = ALLOW_STATUS,
    allow_advisory: list[str] = ALLOW_ADVISORY,
) -> None:
    """Verify a quote: prints TCB status, advisory ids, measurements and report_data.

    Exit 0 only if it verifies; 1 with the error code if it is refused; 2 on bad input.
    """
    raw, collateral_text = _inputs(quote, collateral)
    events: list[object] = []
    if event_log is not None:
        try:
            events = json.loads(_read(event_log))
        except ValueError:
            raise _fail(f"{event_log} is not JSON") from None
    dev_key = None
    if dev_platform_key is not None:
        try:
            dev_key = bytes.fromhex(dev_platform_key)
        except ValueError:
            raise _fail("--dev-platform-key must be hex") from None
    kind = "tdx" if collateral_text is not None else "dev"
    at = int(time.time()) if now is None else now
    try:
        evidence = Evidence(kind, raw, collateral_text, tuple(parse_event_log(events)))
        attested = verify_quote(evidence, at, dev_key, _policy(allow_status, allow_advisory))
    except AttestationError as exc:
        if as_json:
            typer.echo(json.dumps({"verified": False, "error": exc.to_json(), "now": at}))
        else:
            typer.echo(f"refused: {exc.code}: {exc.message}", err=True)
        raise typer.Exit(code=EXIT_REFUSED) from None
    data = {"verified": True, **attested.to_json(), "now": at}
    if as_json:
        typer.echo(json.dumps(data))
        return
    for key, value in data.items():
        if isinstance(value, list):
            value = ", ".join(value) if value else "none"
        typer.echo(f"{key}: {value}")


@app.command("tcb-status")
def tcb_status_command(
    quote: Path = QUOTE,
    collateral: Path = typer.Option(..., "--collateral", help="A (newer) collateral set."),
    now: int | None = NOW,
    as_json: bool = JSON,
    allow_status: list[str] = ALLOW_STATUS,
    allow_advisory: list[str] = ALLOW_ADVISORY,
) -> None:
    """Early warning: the TCB status this quote gets under COLLATERAL and whether the
    policy accepts it. Exit 0 if accepted, 1 if not (status and reason printed)."""
    raw, collateral_text = _inputs(quote, collateral)
    assert collateral_text is not None
    at = int(time.time()) if now is None else now
    result = tcb_check(raw, collateral_text, at, _policy(allow_status, allow_advisory))
    if as_json:
        typer.echo(json.dumps(result))
    else:
        ids = ", ".join(result["advisory_ids"]) or "none"
        typer.echo(f"tcb_status: {result['tcb_status']}  advisory_ids: {ids}")
        typer.echo(
            "accepted"
            if result["accepted"]
            else f"NOT accepted: {result['error']['code']}: {result['error']['message']}"
        )
    if not result["accepted"]:
        raise typer.Exit(code=EXIT_REFUSED)
