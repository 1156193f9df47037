"""`quorumkeep crypto …`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from quorumkeep.crypto.errors import CryptoError
from quorumkeep.crypto.vectors import frost_vector

app = typer.Typer(no_args_is_help=True, help="crypto commands")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


@app.command("frost-vector")
def frost_vector_command(
    file: Path = typer.Argument(..., help="A FROST(Ed25519, SHA-512) vector, CFRG JSON layout."),
) -> None:
    """Recompute every output of a FROST(Ed25519, SHA-512) test vector from its inputs.

    Prints the complete vector as 2-space-indented JSON in the RFC 9591 layout; the
    output ends with a newline exactly when the input file does, so a correct vector
    file is reproduced byte for byte. Malformed input: one line on stderr, exit code 2.
    """
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        vector = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(f"{file} is not JSON: {exc}") from None
    try:
        result = frost_vector(vector)
    except CryptoError as exc:
        raise _fail(f"{file}: {exc}") from None
    sys.stdout.write(json.dumps(result, indent=2) + ("\n" if text.endswith("\n") else ""))


@app.command("demo")
def demo_command() -> None:
    """A DKG, a threshold signature, a resharing and a signature under the same key."""
    from quorumkeep.devnet import crypto_story

    crypto_story.run(say=typer.echo)
