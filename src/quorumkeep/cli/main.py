"""Entry point of the `quorumkeep` command: one sub-command group per package."""

from __future__ import annotations

import importlib
import sys

import typer

# Typer (>= 0.29, pinned in pyproject.toml) vendors its own copy of click.
from typer._click.exceptions import ClickException, NoArgsIsHelpError

HELP = "quorumkeep: a threshold-signing network whose operators never lose the signing key."
GROUPS = (
    "crypto",
    "keys",
    "ledger",
    "contract",
    "node",
    "operator",
    "backup",
    "provider",
    "devnet",
    "sign",
    "bench",
    "attest",
    "ers",
)
"""The sub-commands, in help order; each is the module ``quorumkeep.cli.<name>`` (``sign`` is
one command, the others are groups)."""


def build_app(argv: list[str]) -> typer.Typer:
    """The command line for ``argv``: only the sub-command it names is imported (a process
    of the network starts without every group's imports: 0.3 to 0.5 s of CPU less); every
    one for the top-level help, an option first or an unknown name."""
    named = [argv[1]] if len(argv) > 1 and argv[1] in GROUPS else list(GROUPS)
    app = typer.Typer(
        name="quorumkeep", help=HELP, no_args_is_help=True, pretty_exceptions_enable=False
    )
    # A callback keeps the command a group when only one sub-command is loaded.
    app.callback()(lambda: None)
    for name in named:
        module = importlib.import_module(f"quorumkeep.cli.{name}")
        if name == "sign":
            app.command("sign")(module.sign_command)
        else:
            app.add_typer(module.app, name=name)
    return app


def main() -> None:
    """Run the command; a usage error is one readable line and exit code 2, not a box."""
    try:
        result = build_app(sys.argv)(standalone_mode=False)
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
