"""Entry point of the `quorumkeep` command: one sub-command group per package."""

from __future__ import annotations

import sys

import typer

# Typer (>= 0.29, pinned in pyproject.toml) vendors its own copy of click.
from typer._click.exceptions import ClickException, NoArgsIsHelpError

from quorumkeep.cli import (
    attest,
    backup,
    bench,
    contract,
    crypto,
    devnet,
    ers,
    keys,
    ledger,
    node,
    operator,
    provider,
    sign,
)

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
app.add_typer(backup.app, name="backup")
app.add_typer(provider.app, name="provider")
app.add_typer(devnet.app, name="devnet")
app.command("sign")(sign.sign_command)
app.add_typer(bench.app, name="bench")
app.add_typer(attest.app, name="attest")
app.add_typer(ers.app, name="ers")


def main() -> None:
    """Run the command; a usage error is one readable line and exit code 2, not a box."""
    try:
        result = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:
        if exc.ctx is not None:
            print(exc.ctx.get_help())
        sys.exit(2)
    except ClickException as exc:
        print(f"error: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
