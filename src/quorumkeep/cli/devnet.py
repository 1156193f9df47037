"""`quorumkeep devnet …`: a local network of real processes (docs/devnet.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from quorumkeep.cli.keys import emit_json, fail
from quorumkeep.devnet.defaults import DEFAULT_UP_TIMEOUT, STOP_GRACE
from quorumkeep.devnet.errors import DevnetError
from quorumkeep.ledger.errors import LedgerError

if TYPE_CHECKING:  # the commands import the devnet machinery only when they run
    from quorumkeep.devnet.network import Devnet

app = typer.Typer(
    no_args_is_help=True,
    help="A local quorumkeep network (ledger + nodes) of real processes on 127.0.0.1.",
)

EXIT_FAILED = 1
DIR_OPTION = typer.Option(..., "--dir", help="The devnet directory.", file_okay=False)


def _failed(exc: DevnetError | LedgerError) -> None:
    if isinstance(exc, LedgerError):
        fail(f"{exc.code}: {exc.message}", EXIT_FAILED)
    fail(str(exc), EXIT_FAILED)


@app.command("up")
def up(
    nodes: int = typer.Option(4, "--nodes", min=1, max=64, help="How many nodes."),
    threshold: int = typer.Option(3, "--threshold", min=2, help="Signers needed (t of n)."),
    directory: Path = DIR_OPTION,
    resume: bool = typer.Option(
        False, "--resume", help="Restart the stopped processes of an existing devnet in DIR."
    ),
    spare_operators: int = typer.Option(
        1,
        "--spare-operators",
        min=0,
        max=16,
        help="Extra operator accounts without a node, for nodes added later (resharing).",
    ),
    timeout: float = typer.Option(
        DEFAULT_UP_TIMEOUT, "--timeout", min=1.0, help="Seconds to wait for domain 0's key."
    ),
) -> None:
    """Start a ledger and N nodes, initialize the contract, generate domain 0's key.

    An existing devnet in DIR is never replaced: `up` refuses it (running or stopped);
    `up --resume` restarts whatever of it is stopped.
    """
    from quorumkeep.devnet import watch
    from quorumkeep.devnet.network import Devnet

    console = Console(stderr=True)
    try:
        with console.status("starting the devnet") as spinner:
            devnet = Devnet.up(
                directory,
                nodes=nodes,
                threshold=threshold,
                resume=resume,
                spare_operators=spare_operators,
                timeout=timeout,
                progress=lambda what: spinner.update(what),
            )
            state = devnet.contract_state()
    except (DevnetError, LedgerError) as exc:
        _failed(exc)
    keys = watch.domain_keys(state)
    typer.echo(f"devnet ready in {devnet.path}")
    typer.echo(f"  ledger:     {devnet.ledger_url}")
    typer.echo(
        f"  network:    {len(watch.participants(state))} nodes, threshold "
        f"{watch.threshold(state)}, epoch {watch.epoch(state)}"
    )
    for domain_id, key in sorted(keys.items()):
        typer.echo(f"  domain {domain_id}:   {key}")
    typer.echo(
        f"sign: quorumkeep sign --devnet {devnet.path} --payload <hex, 32+ bytes> --path <text>"
    )


def _open(directory: Path) -> Devnet:
    from quorumkeep.devnet.network import Devnet

    try:
        return Devnet(directory)
    except DevnetError as exc:
        _failed(exc)
        raise AssertionError("unreachable") from None


def _yes(value: bool) -> str:
    return "[green]yes[/green]" if value else "[red]no[/red]"


def _render(snapshot: dict[str, Any]) -> None:
    console = Console()
    procs = Table(title=f"devnet {snapshot['dir']}")
    for column in ("process", "account", "pid", "alive", "ports"):
        procs.add_column(column)
    for p in snapshot["processes"]:
        procs.add_row(
            p["name"],
            p["account"] or "-",
            str(p["pid"] or "-"),
            "retired" if p.get("retired") and not p["alive"] else _yes(p["alive"]),
            " ".join(f"{k}={v}" for k, v in p["ports"].items()),
        )
    console.print(procs)
    contract = snapshot["contract"]
    if "error" in contract:
        console.print(f"contract: [red]{contract['error']}[/red]")
        return
    console.print(
        f"contract: [bold]{contract['protocol_state']}[/bold], epoch {contract['epoch']}, "
        f"threshold {contract['threshold']}, {contract['pending_requests']} pending requests"
    )
    for domain in contract["domains"]:
        console.print(f"  domain {domain['domain_id']}: {domain['public_key']}")
    if "resharing_to" in contract:
        target = contract["resharing_to"]
        console.print(
            f"  resharing to epoch {target['epoch']}: {', '.join(target['accounts'])} "
            f"(threshold {target['threshold']})"
        )
    table = Table(title="participants")
    for column in ("id", "account", "node", "url", "role", "epoch", "peers", "presignatures"):
        table.add_column(column)
    for m in contract["participants"]:
        node = m["node"]
        seen = snapshot["nodes"].get(node) if node else None
        role = epoch = peers = pools = "-"
        if isinstance(seen, dict) and "error" not in seen:
            role = str(seen.get("role", "?"))
            epoch = str(seen.get("epoch"))
            connected = seen.get("connected_peers", [])
            peers = str(len(connected)) if isinstance(connected, list) else str(connected)
            sizes = seen.get("presignatures") or {}
            pools = " ".join(f"domain {d}: {n}" for d, n in sorted(sizes.items())) or "0"
        elif isinstance(seen, dict):
            role = "[red]unreachable[/red]"
        table.add_row(
            str(m["participant_id"]), m["account"], node or "-", m["url"], role, epoch, peers, pools
        )
    console.print(table)


@app.command("status")
def status(
    directory: Path = DIR_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Processes (pid, alive, ports), protocol state, epoch and participants."""
    from quorumkeep.devnet import status as devnet_status

    devnet = _open(directory)
    snapshot = devnet_status.gather(devnet)
    if as_json:
        emit_json(snapshot)
    else:
        _render(snapshot)


@app.command("down")
def down(
    directory: Path = DIR_OPTION,
    grace: float = typer.Option(
        STOP_GRACE, "--grace", min=0.0, help="Seconds between SIGTERM and SIGKILL."
    ),
) -> None:
    """Stop every process the devnet started (SIGTERM, then SIGKILL after --grace)."""
    devnet = _open(directory)
    try:
        stopped = devnet.down(grace=grace)
    except DevnetError as exc:
        _failed(exc)
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command("kill")
def kill(
    node: str = typer.Argument(..., help="Process name (a node such as op2, or ledger)."),
    directory: Path = DIR_OPTION,
) -> None:
    """SIGKILL one process: a crash, with no clean shutdown."""
    devnet = _open(directory)
    try:
        killed = devnet.kill(node)
    except DevnetError as exc:
        _failed(exc)
    typer.echo(f"killed {node}" if killed else f"{node} was not running")


@app.command("start")
def start(
    node: str = typer.Argument(..., help="Process name (a node such as op2, or ledger)."),
    directory: Path = DIR_OPTION,
    timeout: float = typer.Option(60.0, "--timeout", min=1.0, help="Seconds to wait for health."),
) -> None:
    """Start one stopped process and wait until it answers its health endpoint."""
    devnet = _open(directory)
    try:
        started = devnet.start(node, timeout=timeout)
    except DevnetError as exc:
        _failed(exc)
    typer.echo(f"started {node}" if started else f"{node} is already running")
