"""`quorumkeep sign …`: submit a sign request and wait for the network's signature."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from quorumkeep.cli.keys import PASSPHRASE_FILE, fail, signer_or_fail
from quorumkeep.encoding.fields import decode_hex
from quorumkeep.ledger.client import AccountSigner
from quorumkeep.ledger.signing import DEFAULT_SIGN_TIMEOUT

EXIT_FAILED = 1


def _payload(text: str) -> bytes:
    value = text.strip().lower().removeprefix("0x")
    try:
        return decode_hex(value)
    except ValueError:
        fail("--payload must be hex (e.g. 32 bytes: 64 hex digits)")


def sign_command(
    payload: str = typer.Option(..., "--payload", help="What to sign, hex (32 to 1232 bytes)."),
    path: str = typer.Option(
        ..., "--path", help="Derivation path: the key is derived from (your account, path)."
    ),
    domain: int = typer.Option(0, "--domain", min=0, help="Signing domain id."),
    devnet_dir: Path | None = typer.Option(
        None, "--devnet", help="A devnet directory: sign as its `user` account.", file_okay=False
    ),
    ledger: str | None = typer.Option(None, "--ledger", help="Ledger URL (without --devnet)."),
    signer: str | None = typer.Option(None, "--signer", help="Account to sign as (with --key)."),
    key: Path | None = typer.Option(
        None, "--key", help="A full-access key file of that account.", dir_okay=False
    ),
    passphrase_file: Path | None = PASSPHRASE_FILE,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    timeout: float = typer.Option(
        DEFAULT_SIGN_TIMEOUT, "--timeout", min=0.1, help="Seconds to wait for the signature."
    ),
) -> None:
    """Submit a sign request and wait for the network's signature, verified locally.

    Prints payload, path, public_key (the derived key it verifies under), signature and
    latency_ms. Either --devnet DIR, or --ledger URL --signer ACCOUNT --key FILE (key
    passphrase from --passphrase-file or QUORUMKEEP_PASSPHRASE).
    """
    from quorumkeep.ledger.signing import SignError, sign_once

    data = _payload(payload)
    account: AccountSigner
    if devnet_dir is not None:
        if ledger is not None or signer is not None or key is not None:
            fail("give either --devnet or --ledger/--signer/--key, not both")
        from quorumkeep.cli.devnet import devnet_user  # the devnet's own CLI reads its layout

        url, account = devnet_user(devnet_dir)
    else:
        if ledger is None or key is None:
            fail("give --devnet DIR, or --ledger URL with --key FILE (and --signer ACCOUNT)")
        url = ledger
        account = signer_or_fail(key, signer, passphrase_file)
    try:
        result = sign_once(url, account, data, path, domain, timeout=timeout)
    except SignError as exc:
        fail(str(exc), EXIT_FAILED)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    typer.echo(f"signature:  {result.signature.hex()}")
    typer.echo(f"public key: {result.public_key.hex()} (account {account.account}, path {path!r})")
    typer.echo(f"payload:    {result.payload.hex()}")
    typer.echo(f"latency:    {result.latency_s * 1000:.1f} ms (verified with libsodium)")
