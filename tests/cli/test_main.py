"""The `quorumkeep` entry point loads only the sub-command it runs (in-process, no process)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer.core
import typer.main

from quorumkeep.cli import main


def command_names(argv: list[str]) -> list[str]:
    group = typer.main.get_group(main.build_app(argv))
    return sorted(group.commands)


def test_every_sub_command_module_is_listed() -> None:
    cli = Path(main.__file__).parent
    modules = {
        p.stem
        for p in cli.glob("*.py")
        if any(f in p.read_text("utf-8") for f in ("app = typer.Typer(", "def sign_command("))
    } - {"main"}
    assert modules == set(main.GROUPS)


def test_the_top_level_and_an_unknown_name_load_every_sub_command() -> None:
    assert command_names(["quorumkeep"]) == sorted(main.GROUPS)
    assert command_names(["quorumkeep", "--help"]) == sorted(main.GROUPS)
    assert command_names(["quorumkeep", "nosuch"]) == sorted(main.GROUPS)


def test_a_named_sub_command_loads_alone_and_stays_a_sub_command() -> None:
    for name in main.GROUPS:
        assert command_names(["quorumkeep", name, "--help"]) == [name]
    # `sign` is a command, not a group: alone it must not become the root command
    group = typer.main.get_group(main.build_app(["quorumkeep", "sign"]))
    assert isinstance(group, typer.core.TyperGroup)


def test_a_group_not_named_is_not_imported() -> None:
    """Loading `keys` does not import the heavy groups (the point of loading lazily)."""
    sys.modules.pop("quorumkeep.cli.bench", None)
    main.build_app(["quorumkeep", "keys"])
    assert "quorumkeep.cli.bench" not in sys.modules
