"""`quorumkeep bench …`."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from quorumkeep.bench import crypto as crypto_bench

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
    console = Console()
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
    console.print(table)
