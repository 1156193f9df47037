"""`quorumkeep devnet …`: a local network of real processes (docs/devnet.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from quorumkeep.cli.console import console as make_console
from quorumkeep.cli.console import print_table
from quorumkeep.cli.keys import EXIT_USAGE, emit_json, fail
from quorumkeep.devnet.defaults import DEFAULT_UP_TIMEOUT, STOP_GRACE
from quorumkeep.devnet.errors import DevnetError
from quorumkeep.ledger.errors import LedgerError

if TYPE_CHECKING:  # the commands import the devnet machinery only when they run
    from quorumkeep.devnet.network import Devnet
    from quorumkeep.ledger.client import AccountSigner

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
    no_backup: bool = typer.Option(
        False, "--no-backup", help="Do not start a backup service per operator."
    ),
    ledger: str = typer.Option(
        "sqlite",
        "--ledger",
        help="sqlite (one ledger process) or etcd (a 3-member etcd cluster and two ledger "
        "servers; clients fail over between them).",
    ),
    key_source: str = typer.Option(
        "passphrase",
        "--key-source",
        help="passphrase, or peers: a key provider per operator holds 2-of-m pieces of every "
        "other operator's node storage key (docs/key-provider-protocol.md).",
    ),
) -> None:
    """Start a ledger and N nodes (and a backup service per operator, registered in the
    contract), initialize the contract, generate domain 0's key.

    An existing devnet in DIR is never replaced: `up` refuses it (running or stopped);
    `up --resume` restarts whatever of it is stopped.
    """
    from quorumkeep.devnet import watch
    from quorumkeep.devnet.network import Devnet

    console = make_console(stderr=True)
    try:
        with console.status("starting the devnet") as spinner:
            devnet = Devnet.up(
                directory,
                nodes=nodes,
                threshold=threshold,
                resume=resume,
                spare_operators=spare_operators,
                timeout=timeout,
                backup=not no_backup,
                ledger=ledger,
                key_source=key_source,
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
    services = devnet.backup_names()
    if services:
        typer.echo(f"  backups:    {len(services)} services ({', '.join(services)})")
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


def devnet_user(directory: Path) -> tuple[str, AccountSigner]:
    """The ledger URL and the ``user`` account's key of a devnet (``quorumkeep sign
    --devnet``); a devnet that cannot give them exits 1 with one line."""
    from quorumkeep.devnet.network import USER

    devnet = _open(directory)
    try:
        return devnet.ledger_url, devnet.signer(USER)
    except DevnetError as exc:
        _failed(exc)
        raise AssertionError("unreachable") from None


def _yes(value: bool) -> str:
    return "[green]yes[/green]" if value else "[red]no[/red]"


def _render(snapshot: dict[str, Any]) -> None:
    console = make_console()
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
    print_table(console, procs)
    contract = snapshot["contract"]
    if "error" in contract:
        console.print(f"contract: [red]{contract['error']}[/red]")
        return
    console.print(
        f"contract: [bold]{contract['protocol_state']}[/bold], epoch {contract['epoch']}, "
        f"threshold {contract['threshold']}, {contract['pending_requests']} pending requests"
    )
    attested = contract.get("attestation") or {}
    if not attested.get("enforced"):
        console.print("  attestation: [red]not enforced (insecure)[/red]")
    elif attested.get("insecure_dev_attestation"):
        console.print("  attestation: [yellow]development quotes allowed (INSECURE)[/yellow]")
    for domain in contract["domains"]:
        console.print(f"  domain {domain['domain_id']}: {domain['public_key']}")
    for gate in contract.get("backup_gate") or []:
        if "error" in gate:
            console.print(f"  backup gate: [red]{gate['error']}[/red]")
            continue
        confirmed = f"{len(gate['confirmed'])} of {gate['required']} backups confirmed"
        wait = gate.get("wait")
        if wait is not None and wait["opened_height"] is not None:
            confirmed += f"; opened after {wait['waited_ms'] / 1000:.1f}s at epoch {wait['epoch']}"
        elif wait is not None:
            confirmed += f"; since block {wait['since_height']}"
        if gate["signing_allowed"]:
            console.print(f"  domain {gate['domain_id']} backup gate: open ({confirmed})")
        else:
            console.print(
                f"  domain {gate['domain_id']} backup gate: [yellow]closed[/yellow] "
                f"({confirmed}; waiting for {', '.join(gate['missing'])}): sign is refused "
                "with KeyNotBackedUp"
            )
    if "resharing_to" in contract:
        target = contract["resharing_to"]
        console.print(
            f"  resharing to epoch {target['epoch']}: {', '.join(target['accounts'])} "
            f"(threshold {target['threshold']})"
        )
    table = Table(title="participants")
    columns = (
        "id",
        "account",
        "node",
        "url",
        "role",
        "epoch",
        "peers",
        "presignatures",
        "attested",
    )
    for column in columns:
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
            str(m["participant_id"]),
            m["account"],
            node or "-",
            m["url"],
            role,
            epoch,
            peers,
            pools,
            _attested(m.get("attestation")),
        )
    print_table(console, table)
    _render_backups(console, snapshot.get("backups") or {})


def _confirmed(seen: dict[str, Any]) -> str:
    """The service's latest backup confirmation in the contract: its epoch, current or not."""
    confirmation = seen.get("confirmation")
    if not isinstance(confirmation, dict):
        return "[red]no[/red]"
    epoch = confirmation.get("epoch")
    if seen.get("confirmed_current"):
        return f"epoch {epoch}"
    return f"[yellow]epoch {epoch} (behind)[/yellow]"


def _attested(entry: dict[str, Any] | None) -> str:
    """One cell: status, kind and TCB status, time left."""
    if not entry:
        return "-"
    status = str(entry.get("status"))
    if status != "valid":
        return f"[red]{status}[/red]"
    left = entry.get("expires_in")
    days = f", {left / 86400:.1f} d left" if isinstance(left, int) else ""
    return f"valid ({entry.get('kind')}, {entry.get('tcb_status')}{days})"


def _render_backups(console: Console, services: dict[str, Any]) -> None:
    if not services:
        return
    table = Table(title="backup services")
    for column in (
        "service",
        "account",
        "registered",
        "epoch held",
        "current",
        "age",
        "confirmed",
        "migration",
        "attested",
    ):
        table.add_column(column)
    for name, seen in sorted(services.items()):
        if "error" in seen:
            table.add_row(name, "-", "[red]unreachable[/red]", "-", "-", "-", "-", "-", "-")
            continue
        age = seen.get("age_seconds")
        migration = seen.get("migration")
        moving = "-"
        if isinstance(migration, dict):
            pushed = "pushed" if migration.get("pushed") else "pushing"
            moving = f"{pushed} to {migration.get('destination_web_url')}"
        held = seen.get("newest_epoch")
        table.add_row(
            name,
            str(seen.get("account") or "-"),
            _yes(bool(seen.get("registered"))),
            "-" if held is None else str(held),
            _yes(bool(seen.get("covers_current_keyset"))),
            "-" if age is None else f"{age:.0f}s",
            _confirmed(seen),
            moving,
            str((seen.get("attestation") or {}).get("status", "-")),
        )
    print_table(console, table)


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


@app.command("demo")
def demo(
    directory: Path | None = typer.Option(
        None,
        "--dir",
        help="Devnet directory (new or empty; kept). Default: a temporary one, removed after "
        "a success.",
        file_okay=False,
    ),
    report: Path | None = typer.Option(
        None, "--json", help="Write the JSON report to this file ('-': stdout).", dir_okay=True
    ),
    only: str | None = typer.Option(
        None, "--only", help="Run only these scenarios: NAME[,NAME] (kebab-case names)."
    ),
) -> None:
    """The recovery story on a fresh 4-node, 3-of-4 devnet with a backup service per
    operator: single-node loss, quorum loss, full-cluster loss, a migration cancelled by
    a resharing — signing after each — and, last, the company gone: the key rebuilt offline
    from the emergency recovery bundle. Exit 0 only if every step succeeded."""
    import json

    from quorumkeep.devnet.demo import (
        SCENARIOS,
        DemoError,
        DemoReport,
        Narrator,
        parse_only,
        run_demo,
        summary_table,
    )

    to_stdout = report is not None and str(report) == "-"
    console = make_console(stderr=to_stdout)
    narrator = Narrator(console)
    console.print(
        "[bold]quorumkeep demo[/bold]: operators back up their key shares, move nodes, and "
        "bring the network back after losing its quorum"
    )

    def write_report(result: DemoReport) -> None:
        if report is None:
            return
        text = json.dumps(result.to_json(), indent=2) + "\n"
        if to_stdout:
            typer.echo(text, nl=False)
            return
        try:
            report.write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {report}: {exc.strerror}", EXIT_FAILED)
        console.print(f"report written to {report}")

    try:
        scenarios = SCENARIOS if only is None else parse_only(only)
    except DemoError as exc:
        fail(str(exc), EXIT_USAGE)
    try:
        result = run_demo(directory, narrator, scenarios)
    except DemoError as exc:
        console.print()
        if exc.report is not None:
            write_report(exc.report)
        fail(str(exc), EXIT_FAILED)
    console.print()
    print_table(console, summary_table(result))
    console.print(
        f"{len(result.signatures)} signatures, every one verified with PyNaCl under the same "
        f"group public key {result.group_public_key}"
    )
    write_report(result)
