"""Entry point of the `quorumkeep` command: one sub-command group per package."""

from __future__ import annotations

import typer

from quorumkeep.cli import bench, contract, crypto, devnet, keys, ledger, node, operator, sign

app = typer.Typer(
    name="quorumkeep",
    help="quorumkeep: a threshold-signing network whose operators never lose the signing key.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(crypto.app, name="crypto")
app.add_typer(keys.app, name="keys")
app.add_typer(ledger.app, name="ledger")
app.add_typer(contract.app, name="contract")
app.add_typer(node.app, name="node")
app.add_typer(operator.app, name="operator")
app.add_typer(devnet.app, name="devnet")
app.command("sign")(sign.sign_command)
app.add_typer(bench.app, name="bench")

if __name__ == "__main__":
    app()
