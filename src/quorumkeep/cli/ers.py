"""`quorumkeep ers …`: emergency recovery (offline key, bundles, recovery).

keygen, verify and recover run offline (quorumkeep.ers imports no node or ledger code);
collect reads a bundle from a ledger. Exit codes: 0 success, 1 refused (the bundle does not
verify, too few parts, wrong epoch, wrong key…), 2 unusable input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from quorumkeep.daemon.config import (
    PassphraseUnavailable,
    passphrase_from_env,
    passphrase_from_file,
)
from quorumkeep.ers import keys
from quorumkeep.ers.bundle import read_bundle, verify, write_bundle
from quorumkeep.ers.errors import ErsError
from quorumkeep.ers.recover import recover, write_recovered

app = typer.Typer(no_args_is_help=True, help="Emergency recovery: offline key, bundles, recovery.")

PASSPHRASE_ENV = "QUORUMKEEP_PASSPHRASE"
EXIT_REFUSED = 1
EXIT_USAGE = 2
_USAGE_CODES = frozenset({"unreadable", "passphrase_unavailable", "exists"})

PASSPHRASE_FILE = typer.Option(
    None,
    "--passphrase-file",
    help=f"File holding the passphrase (default: env {PASSPHRASE_ENV}).",
)


def _fail(exc: ErsError) -> typer.Exit:
    typer.echo(f"error: {exc.code}: {exc.message}", err=True)
    return typer.Exit(code=EXIT_USAGE if exc.code in _USAGE_CODES else EXIT_REFUSED)


def _passphrase(passphrase_file: Path | None) -> bytes:
    try:
        if passphrase_file is not None:
            value = passphrase_from_file(passphrase_file)
        else:
            value = passphrase_from_env(PASSPHRASE_ENV)
    except PassphraseUnavailable as exc:
        raise ErsError("passphrase_unavailable", str(exc)) from None
    if not value:
        raise ErsError("passphrase_unavailable", "the passphrase is empty")
    return value


@app.command("keygen")
def keygen_command(
    out: Path = typer.Option(..., "--out", help="Directory for the key files (created)."),
    bits: int = typer.Option(keys.DEFAULT_BITS, "--bits", help="RSA modulus size."),
    passphrase_file: Path | None = PASSPHRASE_FILE,
) -> None:
    """Make the offline recovery key: ers-private.pem (PKCS#8, encrypted under the
    passphrase), ers-public.pem and ers-public.json (what operators vote). Prints the
    fingerprint as JSON."""
    try:
        made = keys.generate(out, _passphrase(passphrase_file), bits)
    except ErsError as exc:
        raise _fail(exc) from None
    typer.echo(
        json.dumps(
            {
                **keys.public_info(made.public),
                "private_key_file": str(made.private_path),
                "public_key_file": str(made.public_path),
                "info_file": str(made.info_path),
            }
        )
    )


@app.command("verify")
def verify_command(
    bundle_file: Path = typer.Argument(..., metavar="BUNDLE", help="A recovery bundle (JSON)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    ledger: str | None = typer.Option(
        None, "--ledger", help="Also check the package and digests against this ledger."
    ),
) -> None:
    """Check a bundle with public data only: every proof, the verifying shares against the
    public key package and the group key; with --ledger, also that the package and every
    part's digest are the ones the contract recorded. Exit 0 only if every check holds."""
    try:
        bundle = read_bundle(bundle_file)
        report = verify(bundle)
    except ErsError as exc:
        raise _fail(exc) from None
    if ledger is not None:
        from quorumkeep.ers.bundle import Check, Report
        from quorumkeep.operator.ers_collect import CollectError, contract_problems

        try:
            problems = contract_problems(ledger, bundle)
        except CollectError as exc:
            typer.echo(f"error: {exc.code}: {exc.message}", err=True)
            raise typer.Exit(code=EXIT_REFUSED) from None
        check = Check(
            "contract_record",
            not problems,
            "; ".join(problems) or "the package and every digest are the contract's",
        )
        report = Report((*report.checks, check), report.valid_parts)
    if as_json:
        typer.echo(json.dumps(report.to_json()))
    else:
        for check in report.checks:
            typer.echo(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    if not report.ok:
        typer.echo(f"error: bundle_invalid: {report.problems()[0]}", err=True)
        raise typer.Exit(code=EXIT_REFUSED)


@app.command("recover")
def recover_command(
    bundle_file: Path = typer.Argument(..., metavar="BUNDLE", help="A recovery bundle (JSON)."),
    key: Path = typer.Option(..., "--key", help="The recovery private key (PEM)."),
    out: Path = typer.Option(..., "--out", help="Where to write the recovered key (JSON)."),
    account: str | None = typer.Option(None, "--account", help="Derive the key of this account…"),
    path: str | None = typer.Option(None, "--path", help="…and this path."),
    sign: str | None = typer.Option(None, "--sign", help="Also sign this message (hex)."),
    domain: int | None = typer.Option(None, "--domain", help="Refuse a bundle of another domain."),
    epoch: int | None = typer.Option(None, "--epoch", help="Refuse a bundle of another epoch."),
    plaintext: bool = typer.Option(
        False, "--plaintext", help="Write the scalar unencrypted (for import into other software)."
    ),
    passphrase_file: Path | None = PASSPHRASE_FILE,
) -> None:
    """Rebuild the group secret offline, check it against the group key, optionally derive
    the (account, path) key, write it and sign. Prints the public key and the signature."""
    try:
        message = None
        if sign is not None:
            try:
                message = bytes.fromhex(sign)
            except ValueError:
                raise ErsError("unreadable", "--sign must be hex") from None
        passphrase = _passphrase(passphrase_file)
        private = keys.load_private(key, passphrase)
        recovered = recover(
            read_bundle(bundle_file),
            private,
            account=account,
            path=path,
            expect_domain=domain,
            expect_epoch=epoch,
        )
        write_recovered(out, recovered, None if plaintext else passphrase)
    except ErsError as exc:
        raise _fail(exc) from None
    result = {**recovered.public_json(), "out": str(out)}
    if message is not None:
        result["message"] = message.hex()
        result["signature"] = recovered.sign(message).hex()
    typer.echo(json.dumps(result))


@app.command("collect")
def collect_command(
    out: Path = typer.Option(..., "--out", help="Where to write the bundle (JSON)."),
    domain: int = typer.Option(0, "--domain", help="Domain id."),
    epoch: int | None = typer.Option(None, "--epoch", help="Epoch (default: the current one)."),
    ledger: str | None = typer.Option(None, "--ledger", help="Ledger URL."),
    devnet: Path | None = typer.Option(None, "--devnet", help="A devnet directory (its ledger)."),
    wait: float = typer.Option(
        0.0, "--wait", min=0.0, help="Seconds to wait for the parts to be all in (default: 0)."
    ),
) -> None:
    """Assemble a bundle for a domain and epoch from the ledger, checking every part's
    digest against the contract's record and every proof, then write it."""
    from quorumkeep.operator.ers_collect import CollectError, collect_waiting, ledger_url_of

    try:
        url = ledger_url_of(ledger, devnet)
        bundle = collect_waiting(url, domain, epoch, wait=wait)
    except CollectError as exc:
        typer.echo(f"error: {exc.code}: {exc.message}", err=True)
        raise typer.Exit(code=EXIT_REFUSED if exc.code != "unreadable" else EXIT_USAGE) from None
    write_bundle(out, bundle)
    report = verify(bundle)
    typer.echo(
        json.dumps(
            {
                "out": str(out),
                "domain_id": bundle.domain_id,
                "epoch": bundle.epoch,
                "parts": len(bundle.parts),
                "threshold": bundle.threshold,
                "verified": report.ok,
            }
        )
    )
    if not report.ok:
        print(f"error: bundle_invalid: {report.problems()[0]}", file=sys.stderr)
        raise typer.Exit(code=EXIT_REFUSED)
