"""`quorumkeep bench …`."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from quorumkeep.bench import crypto as crypto_bench
from quorumkeep.cli.console import console as make_console
from quorumkeep.cli.console import print_table

app = typer.Typer(no_args_is_help=True, help="bench commands")


@app.command("crypto")
def crypto(
    as_json: bool = typer.Option(False, "--json", help="Print the rows as a JSON list."),
    quick: bool = typer.Option(
        False, "--quick", hidden=True, help="Two small sizes, minimal repetitions (tests)."
    ),
) -> None:
    """Time round1, round2, aggregate, dkg and reshare against their libsodium floor.

    Rows: op, t, n, seconds (median per operation), floor_seconds (the bare libsodium
    calls that operation makes, timed in the same run), ratio = seconds / floor_seconds.
    """
    sizes = crypto_bench.QUICK_SIZES if quick else crypto_bench.SIZES
    if as_json:
        rows = crypto_bench.run(sizes, quick=quick)
        typer.echo(json.dumps(crypto_bench.rows_as_json(rows), indent=2))
        return
    console = make_console()
    with console.status("measuring") as status:
        rows = crypto_bench.run(sizes, quick=quick, progress=lambda what: status.update(what))
    table = Table(title="quorumkeep crypto: median per operation vs. its libsodium calls")
    for column in ("op", "t", "n", "ms", "floor ms", "ratio"):
        table.add_column(column, justify="left" if column == "op" else "right")
    for row in rows:
        table.add_row(
            row.op,
            str(row.t),
            str(row.n),
            f"{row.seconds * 1e3:.3f}",
            f"{row.floor_seconds * 1e3:.3f}",
            f"{row.ratio:.2f}",
        )
    print_table(console, table)


@app.command("ers")
def ers(
    as_json: bool = typer.Option(False, "--json", help="Print the measurements as JSON."),
    repeat: int = typer.Option(20, "--repeat", min=1, help="Runs per operation (median)."),
) -> None:
    """Emergency recovery per share (κ = 128): encrypt, verify and decrypt with RSA-2048 and
    RSA-3072, beside cb-mpc's published RSA-2048 figures (goal: within 3×)."""
    from quorumkeep.bench import ers as ers_bench

    result = ers_bench.run(repeat=repeat)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    table = Table(title="emergency recovery per share (κ = 128) vs. cb-mpc RSA-2048")
    for column in ("op", "RSA bits", "ms", "floor ms", "cb-mpc ms", "ratio", "part bytes"):
        table.add_column(column, justify="left" if column == "op" else "right")
    for row in result["rows"]:
        table.add_row(
            row["op"],
            str(row["rsa_bits"]),
            f"{row['ms']:.2f}",
            "-" if row["floor_ms"] is None else f"{row['floor_ms']:.2f}",
            f"{row['cb_mpc_rsa2048_ms']:.1f}",
            f"{row['ratio']:.2f}",
            str(row["part_bytes"]),
        )
    print_table(make_console(), table)


@app.command("ledger")
def ledger(
    as_json: bool = typer.Option(False, "--json", help="Print the measurements as JSON."),
    transactions: int = typer.Option(500, "--transactions", min=1, help="Per phase."),
    clients: int = typer.Option(16, "--clients", min=1, help="Concurrent clients."),
    views: int = typer.Option(2000, "--views", min=1, help="View calls per phase."),
    store: str = typer.Option(
        "sqlite", "--store", help="sqlite, or etcd (a 3-member cluster on this machine)."
    ),
) -> None:
    """Submitted transactions/s (sequential and concurrent), submit→outcome p50/p99, views/s,
    against a fresh `ledger serve` process (SQLite, fsync per block; or on etcd)."""
    from quorumkeep.bench import ledger as ledger_bench

    try:
        result = ledger_bench.run(
            transactions=transactions, clients=clients, views=max(views, clients), store=store
        )
    except (RuntimeError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    seq, conc, view = result["sequential"], result["concurrent"], result["views"]
    typer.echo(
        f"sequential: {seq['tx_per_s']} tx/s, p50 {seq['p50_ms']} ms, p99 {seq['p99_ms']} ms\n"
        f"{conc['clients']} clients: {conc['tx_per_s']} tx/s, p50 {conc['p50_ms']} ms, "
        f"p99 {conc['p99_ms']} ms\n"
        f"views: {view['sequential_per_s']}/s sequential, {view['concurrent_per_s']}/s concurrent"
    )


@app.command("ledger-history")
def ledger_history(
    as_json: bool = typer.Option(False, "--json", help="Print the measurements as JSON."),
    idle_seconds: float = typer.Option(
        120.0, "--idle-seconds", min=0, help="Idle run to extrapolate a day's growth (0: skip)."
    ),
    transactions: int = typer.Option(
        1_000_000, "--transactions", min=0, help="History to restart after (0: skip)."
    ),
    per_block: int = typer.Option(
        100, "--per-block", min=1, max=2000, help="Transactions a block."
    ),
) -> None:
    """Idle growth per day (extrapolated) and `ledger serve` start time after a history of
    real contract calls built through the storage layer, against a fresh ledger's."""
    from quorumkeep.bench import ledger_history

    try:
        result = ledger_history.run(
            idle_seconds=idle_seconds, transactions=transactions, per_block=per_block
        )
    except (RuntimeError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    if "idle" in result:
        idle = result["idle"]
        typer.echo(
            f"idle: {idle['blocks_per_day']} blocks/day, {idle['mb_per_day']} MB/day "
            f"({idle['seconds']} s measured)"
        )
    if "restart" in result:
        restart = result["restart"]
        typer.echo(
            f"restart after {restart['transactions']} transactions ({restart['blocks']} blocks): "
            f"{min(restart['restart_s'])} s; fresh ledger {restart['fresh_start_s']} s"
        )


@app.command("network")
def network(
    nodes: int = typer.Option(4, "--nodes", min=1, max=32, help="Nodes of the devnet."),
    threshold: int = typer.Option(3, "--threshold", min=2, help="Signers needed (t of n)."),
    requests: int = typer.Option(500, "--requests", min=1, help="Sign requests to time."),
    concurrency: int = typer.Option(
        64, "--concurrency", min=1, max=1024, help="Requests kept in flight at once."
    ),
    no_reshare: bool = typer.Option(
        False, "--no-reshare", help="Skip the n -> n+1 resharing measurement."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Signatures per second, request-to-response latency, DKG and resharing time on a real
    devnet (ledger and nodes as separate processes) in a temporary directory."""
    from quorumkeep.bench import network as network_bench
    from quorumkeep.cli.keys import fail
    from quorumkeep.devnet.errors import DevnetError
    from quorumkeep.ledger.signing import SignError

    if threshold > nodes:
        fail(f"--threshold must be at most --nodes ({nodes})")
    console = make_console(stderr=True)
    try:
        with console.status("benchmarking") as status:
            result = network_bench.run(
                nodes=nodes,
                threshold=threshold,
                requests=requests,
                concurrency=concurrency,
                reshare=not no_reshare,
                progress=lambda what: status.update(what),
            )
    except (DevnetError, SignError) as exc:
        fail(str(exc), 1)
    body = result.to_json()
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    latency = body["latency_ms"]
    typer.echo(
        f"{threshold}-of-{nodes}: {body['signatures_per_second']} signatures/s "
        f"({requests} requests, {concurrency} in flight)\n"
        f"latency request -> response: p50 {latency['p50']} ms, p90 {latency['p90']} ms, "
        f"p99 {latency['p99']} ms, max {latency['max']} ms\n"
        f"  on the ledger (block timestamps): p50 {body['ledger_latency_ms']['p50']} ms, "
        f"p99 {body['ledger_latency_ms']['p99']} ms\n"
        f"one request at a time: p50 {body['unloaded']['latency_ms']['p50']} ms, "
        f"p99 {body['unloaded']['latency_ms']['p99']} ms\n"
        f"DKG: {body['dkg_seconds']} s, then the backup gate: "
        f"{_or_dash(body.get('backup_gate_seconds'))} s; "
        f"resharing {body['resharing'] or '-'}: "
        f"{body['resharing_seconds'] if body['resharing_seconds'] is not None else '-'} s"
    )


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


@app.command("recovery")
def recovery(
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    only: str | None = typer.Option(
        None, "--only", help="Run only these scenarios (NAME[,NAME]), after the set-up."
    ),
) -> None:
    """Recovery time objective: seconds from start_node_migration to conclude_node_migration
    (ledger block timestamps) per scenario of the demo, on a fresh devnet; goal <= 2 s each
    (<= 1 s for failover-to-standby)."""
    from quorumkeep.bench import recovery as recovery_bench
    from quorumkeep.cli.keys import fail
    from quorumkeep.devnet.demo import SCENARIOS, DemoError, Narrator, parse_only

    console = make_console(stderr=True)
    try:
        scenarios = parse_only(only) if only is not None else SCENARIOS
        if as_json:
            with console.status("running the recovery scenarios on a fresh devnet"):
                result = recovery_bench.run(scenarios=scenarios)
        else:
            result = recovery_bench.run(narrator=Narrator(console), scenarios=scenarios)
    except DemoError as exc:
        fail(str(exc), 1)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    table = Table(title="recovery: start_node_migration -> conclude_node_migration (ledger time)")
    for column in ("scenario", "migrations", "seconds", "max", "goal"):
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for name, entry in result["scenarios"].items():
        table.add_row(
            name,
            f"{entry['concluded']} concluded, {entry['cancelled']} cancelled",
            ", ".join(f"{s:.3f}" for s in entry["seconds"]) or "-",
            "-" if entry["max_seconds"] is None else f"{entry['max_seconds']:.3f}",
            "-"
            if entry["meets_goal"] is None
            else f"<= {entry['goal_seconds']:g} s " + ("yes" if entry["meets_goal"] else "NO"),
        )
    print_table(make_console(), table)
