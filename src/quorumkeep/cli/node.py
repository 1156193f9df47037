"""`quorumkeep node …`: set up a node directory and run the node (docs/node.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from quorumkeep.cli.keys import EXIT_REJECTED, JSON_OUTPUT, emit_json, fail
from quorumkeep.crypto.seal import KDF_COSTS
from quorumkeep.ledger.client import LedgerClient
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.node.config import ConfigError, NodeConfig, config_from_mapping
from quorumkeep.node.identity import IdentityError, initialize_node
from quorumkeep.node.key_sources import key_source_from_config
from quorumkeep.node.keystore_errors import KeystoreError

app = typer.Typer(no_args_is_help=True, help="Set up and run an MPC node.")

DEFAULT_PASSPHRASE_ENV = "QUORUMKEEP_PASSPHRASE"


def build_config(
    *,
    account: str,
    directory: Path,
    ledger: str,
    p2p: str,
    web: str,
    p2p_advertise: str | None,
    web_advertise: str | None,
    passphrase_env: str | None,
    passphrase_file: Path | None,
    warm_standby: bool = False,
    attestation: dict[str, Any] | None = None,
    key_source: str = "passphrase",
    threshold: int = 2,
    providers: list[str] | None = None,
    provider_wait: float | None = None,
) -> NodeConfig:
    storage: dict[str, Any]
    if key_source == "peers":
        storage = {"source": "peers", "threshold": threshold}
        if providers:
            storage["providers"] = providers
        if provider_wait is not None:
            storage["wait"] = provider_wait
    elif passphrase_file is not None:
        storage = {"source": "passphrase", "passphrase_file": str(passphrase_file)}
    else:
        storage = {
            "source": "passphrase",
            "passphrase_env": passphrase_env or DEFAULT_PASSPHRASE_ENV,
        }
    document: dict[str, Any] = {
        "account": account,
        "data_dir": str(directory),
        "ledger_url": ledger,
        "p2p_listen": p2p,
        "web_listen": web,
        "storage_key": storage,
    }
    if warm_standby:
        document["warm_standby"] = True
    if attestation is not None:
        document["attestation"] = attestation
    if p2p_advertise is not None:
        document["p2p_advertise"] = p2p_advertise
    if web_advertise is not None:
        document["web_advertise"] = web_advertise
    # Relative passphrase files are relative to the node directory, as in node.toml.
    return config_from_mapping(document, base_dir=directory)


@app.command("init")
def init(
    account: str = typer.Option(..., "--account", help="The operator's account on the ledger."),
    directory: Path = typer.Option(
        ..., "--dir", help="Node directory to create (keys, keystore, node.toml).", file_okay=False
    ),
    ledger: str = typer.Option(..., "--ledger", help="Ledger URL, e.g. http://127.0.0.1:7700."),
    p2p: str = typer.Option("127.0.0.1:7001", "--p2p", help="HOST:PORT for the node mesh."),
    web: str = typer.Option("127.0.0.1:8001", "--web", help="HOST:PORT for the HTTPS web API."),
    p2p_advertise: str | None = typer.Option(
        None, "--p2p-advertise", help="HOST:PORT peers dial, if not the --p2p address."
    ),
    web_advertise: str | None = typer.Option(
        None, "--web-advertise", help="HOST:PORT clients use, if not the --web address."
    ),
    passphrase_env: str | None = typer.Option(
        None,
        "--passphrase-env",
        help="Environment variable holding the storage passphrase "
        f"(default {DEFAULT_PASSPHRASE_ENV}).",
    ),
    passphrase_file: Path | None = typer.Option(
        None, "--passphrase-file", help="File holding the storage passphrase.", dir_okay=False
    ),
    kdf_cost: str = typer.Option(
        "moderate",
        "--kdf-cost",
        help="Argon2id cost of the storage key: moderate, interactive or minimum (tests only).",
    ),
    warm_standby: bool = typer.Option(
        False,
        "--warm-standby",
        help="A warm standby for ACCOUNT: keeps the shares its primary pushes, takes no part "
        "until a fail-over migration to it (node.toml warm_standby = true).",
    ),
    key_source: str = typer.Option(
        "passphrase",
        "--key-source",
        help="Where the storage key comes from: passphrase, or peers (key providers of other "
        "operators hold it k-of-m).",
    ),
    threshold: int = typer.Option(
        2, "--threshold", help="peers: pieces needed to open the node's disk (k >= 2)."
    ),
    providers: str | None = typer.Option(
        None,
        "--providers",
        help="peers: comma-separated provider accounts (default: every registered provider of "
        "another operator).",
    ),
    provider_wait: float | None = typer.Option(
        None, "--provider-wait", help="peers: seconds a start keeps asking providers (600)."
    ),
    attestation: str = typer.Option(
        "none", "--attestation", help="How the node obtains its quote: none, dev or tdx."
    ),
    dev_platform_key_file: Path | None = typer.Option(
        None, "--dev-platform-key-file", help="dev: the development platform key (hex seed)."
    ),
    app_name: str | None = typer.Option(
        None, "--attestation-app", help="dev: the app the guest reports (its compose hash)."
    ),
    pccs_url: str | None = typer.Option(None, "--pccs-url", help="tdx: collateral source."),
) -> None:
    """Create the node's keys and DIR/node.toml; print the participant info to register."""
    if key_source not in ("passphrase", "peers"):
        fail("--key-source must be passphrase or peers")
    if passphrase_env is not None and passphrase_file is not None:
        fail("give --passphrase-env or --passphrase-file, not both")
    if key_source == "peers" and (passphrase_env is not None or passphrase_file is not None):
        fail("--key-source peers takes no passphrase")
    if kdf_cost not in KDF_COSTS:
        fail(f"--kdf-cost must be one of {', '.join(KDF_COSTS)}")
    directory = directory.resolve()
    try:
        config = build_config(
            account=account,
            directory=directory,
            ledger=ledger,
            p2p=p2p,
            web=web,
            p2p_advertise=p2p_advertise,
            web_advertise=web_advertise,
            passphrase_env=passphrase_env,
            passphrase_file=passphrase_file,
            warm_standby=warm_standby,
            key_source=key_source,
            threshold=threshold,
            providers=None if providers is None else providers.split(","),
            provider_wait=provider_wait,
            attestation=None
            if attestation == "none"
            else {
                k: v
                for k, v in {
                    "kind": attestation,
                    "dev_platform_key_file": None
                    if dev_platform_key_file is None
                    else str(dev_platform_key_file.resolve()),
                    "app": app_name,
                    "pccs_url": pccs_url,
                }.items()
                if v is not None
            },
        )
    except ConfigError as exc:
        fail(str(exc))
    opslimit, memlimit = KDF_COSTS[kdf_cost]
    source = key_source_from_config(
        config,
        opslimit=opslimit,
        memlimit=memlimit,
        progress=lambda line: typer.echo(line, err=True),
    )
    try:
        identity = initialize_node(config, source, random_bytes=os.urandom)
    except (IdentityError, KeystoreError) as exc:
        fail(str(exc))
    typer.echo(f"node initialized in {directory} for account {account}", err=True)
    typer.echo(json.dumps(identity.participant_info(config), indent=2, sort_keys=True))


@app.command("run")
def run(
    config: Path = typer.Option(..., "--config", help="Path of node.toml.", dir_okay=False),
    ledger_wait: float = typer.Option(
        30.0, "--ledger-wait", min=0.0, help="Seconds to keep retrying an unreachable ledger."
    ),
    takeover_timeout: float = typer.Option(
        2.0,
        "--takeover-timeout",
        min=0.05,
        help="Seconds before the next participant takes over a sign request.",
    ),
    presignatures: int = typer.Option(
        64, "--presignatures", min=0, help="Target presignature pool size per domain."
    ),
    log_level: str = typer.Option("INFO", "--log-level", help="DEBUG, INFO, WARNING, ERROR."),
    exit_on_decommission: bool = typer.Option(
        False,
        "--exit-on-decommission",
        help="Exit (code 0) after a migration replaced this node and it wiped its shares, "
        "instead of standing by (also node.toml exit_on_decommission = true).",
    ),
) -> None:
    """Run the node until SIGTERM or SIGINT."""
    from quorumkeep.node.coordinator import CoordinatorSettings
    from quorumkeep.node.process import run as run_process

    settings = CoordinatorSettings(
        takeover_timeout=takeover_timeout,
        presignature_target=presignatures,
        exit_on_decommission=exit_on_decommission,
    )
    code = run_process(config, ledger_wait=ledger_wait, log_level=log_level, settings=settings)
    if code:
        raise typer.Exit(code)


@app.command("snapshot")
def snapshot(
    directory: Path = typer.Option(
        ...,
        "--dir",
        help="The node directory (holding node.toml); the node may be running.",
        file_okay=False,
    ),
    out: Path = typer.Option(..., "--out", help="The archive to write.", dir_okay=False),
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Write a consistent snapshot of a node directory (secrets stay sealed) with a manifest."""
    import time

    from quorumkeep.node.snapshot import create_snapshot
    from quorumkeep.node.snapshot_format import SnapshotError

    try:
        manifest = create_snapshot(directory, out, now_ms=time.time_ns() // 1_000_000)
    except SnapshotError as exc:
        fail(f"{exc.code}: {exc}")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    if as_json:
        emit_json(manifest.to_json())
        return
    typer.echo(
        f"snapshot of {manifest.account}'s node written to {out}: epoch {manifest.epoch}, "
        f"{len(manifest.domains)} domain(s), {manifest.presignatures} presignature(s) "
        "(forgotten when a restored node starts)"
    )


@app.command("restore")
def restore(
    archive: Path = typer.Argument(
        ..., help="A snapshot written by `node snapshot`.", dir_okay=False
    ),
    directory: Path = typer.Option(
        ..., "--dir", help="The directory to create (absent or empty).", file_okay=False
    ),
    ledger: str | None = typer.Option(
        None, "--ledger", help="Ledger URL to check the epoch against (default: node.toml's)."
    ),
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Check a snapshot (format, checksums, epoch against the contract) and write NEWDIR."""
    from quorumkeep.contract.state import ContractState
    from quorumkeep.node.snapshot_format import SnapshotError
    from quorumkeep.node.snapshot_restore import (
        read_snapshot,
        restore_refusal,
        restored_config,
        write_restored,
    )

    try:
        manifest, contents = read_snapshot(archive)
        url = ledger or restored_config(contents["node.toml"], directory.resolve()).ledger_url
    except SnapshotError as exc:
        fail(f"{exc.code}: {exc}")
    try:
        with LedgerClient(url) as client:
            state = ContractState.from_json(client.view("state"))
    except LedgerError as exc:
        fail(f"cannot check the snapshot against the contract at {url}: {exc.code}", EXIT_REJECTED)
    refusal = restore_refusal(manifest, state)
    if refusal is not None:
        fail(f"{refusal.code}: {refusal}", EXIT_REJECTED)
    try:
        config = write_restored(contents, directory)
    except SnapshotError as exc:
        fail(f"{exc.code}: {exc}")
    except OSError as exc:
        fail(f"cannot write {directory}: {exc.strerror or exc}")
    document = {**manifest.to_json(), "directory": str(config.data_dir)}
    if as_json:
        emit_json(document)
        return
    typer.echo(
        f"restored {manifest.account}'s node (epoch {manifest.epoch}) into {config.data_dir}; "
        f"start it with: quorumkeep node run --config {config.data_dir / 'node.toml'} "
        f"(it forgets the snapshot's {manifest.presignatures} presignature(s) when it starts)"
    )


# --- wrapped export and import (docs/wrapped-export.md) -----------------------------------

NODE_DIR = typer.Option(..., "--dir", help="The node directory (holds node.toml).", file_okay=False)


def _node_config(directory: Path) -> NodeConfig:
    from quorumkeep.node.config import CONFIG_FILE_NAME, load_config

    try:
        return load_config(directory / CONFIG_FILE_NAME)
    except ConfigError as exc:
        fail(str(exc))


def _wrapping_key_arg(value: str, option: str) -> bytes:
    text = value.strip()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        fail(f"{option}: expected a wrapping key, 64 lowercase hex digits")
    return bytes.fromhex(text)


@app.command("wrapping-key")
def wrapping_key(
    directory: Path = NODE_DIR,
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the standby info a primary's `node export-config --standby` takes.",
    ),
) -> None:
    """Print the node's wrapping public key (X25519, hex): what exports to it are sealed to."""
    from quorumkeep.node.wrapped_export import load_wrapping_key, standby_info
    from quorumkeep.wire.wrapped import WrappedExportError

    config = _node_config(directory)
    try:
        pair = load_wrapping_key(config)
        info = standby_info(config, pair) if as_json else None
    except (KeystoreError, WrappedExportError) as exc:
        fail(str(exc))
    if info is not None:
        typer.echo(json.dumps(info, indent=2, sort_keys=True))
    else:
        typer.echo(pair.public_key.hex())


@app.command("export-config")
def export_config(
    directory: Path = NODE_DIR,
    allow: bool | None = typer.Option(
        None, "--allow/--deny", help="Set [export] allow (exports refused while false)."
    ),
    whitelist: list[str] = typer.Option(
        [], "--whitelist", help="Add a wrapping key (hex) to [export] whitelist; repeatable."
    ),
    standby: str | None = typer.Option(
        None,
        "--standby",
        help="Push every keyset to this warm standby: the JSON `node wrapping-key --json` "
        "printed on it (a file or the JSON itself); its wrapping key is whitelisted.",
    ),
) -> None:
    """Change the node's [export] settings in node.toml (a running node reads them at start)."""
    from quorumkeep.node.wrapped_export import update_export_config

    keys = [_wrapping_key_arg(k, "--whitelist").hex() for k in whitelist]
    info: dict[str, Any] | None = None
    if standby is not None:
        text = standby if standby.lstrip().startswith("{") else None
        if text is None:
            try:
                text = Path(standby).read_text(encoding="utf-8")
            except OSError as exc:
                fail(f"--standby: cannot read {standby} ({exc.strerror})")
        try:
            info = json.loads(text)
        except ValueError:
            fail("--standby: not JSON")
        if not isinstance(info, dict):
            fail("--standby: expected a JSON object")
    try:
        config = update_export_config(directory, allow=allow, whitelist=keys, standby=info)
    except (ConfigError, ValueError) as exc:
        fail(" ".join(str(exc).split()))
    export = config.export
    typer.echo(
        json.dumps(export.model_dump(mode="json", exclude_none=True), indent=2, sort_keys=True)
    )
    if export.pushes and not export.allow:
        typer.echo(
            "warning: [export] allow = false: the node will not push (add --allow)", err=True
        )
    typer.echo("restart the node for the change to take effect", err=True)


@app.command("export")
def export(
    directory: Path = NODE_DIR,
    to: str = typer.Option(..., "--to", help="The destination's wrapping key (hex, whitelisted)."),
    out: Path = typer.Option(
        ..., "--out", help="File to write the wrapped export to.", dir_okay=False
    ),
) -> None:
    """Seal the node's shares of the keyset in force to a whitelisted wrapping key."""
    from quorumkeep.daemon.config import write_atomically
    from quorumkeep.node.identity import IdentityError
    from quorumkeep.node.wrapped_export import export_shares
    from quorumkeep.wire.wrapped import WrappedExportError

    config = _node_config(directory)
    destination = _wrapping_key_arg(to, "--to")
    try:
        wrapped = export_shares(config, destination)
    except WrappedExportError as exc:
        fail(f"{exc.code}: {exc.message}")
    except (KeystoreError, IdentityError) as exc:
        fail(str(exc))
    write_atomically(out, wrapped.to_bytes())
    typer.echo(
        json.dumps(
            {
                "account": wrapped.account,
                "participant_id": wrapped.participant_id,
                "epoch": wrapped.epoch,
                "domains": list(wrapped.keyset.domain_ids),
                "destination": destination.hex(),
                "file": str(out),
            },
            sort_keys=True,
        )
    )


@app.command("import")
def import_(
    file: Path = typer.Argument(
        ..., help="A wrapped export (`node export --out`).", dir_okay=False
    ),
    directory: Path = NODE_DIR,
) -> None:
    """Hand a wrapped export to the running node: checked against the contract, then stored
    (a warm standby keeps it; a migration to the node concludes with it)."""
    from quorumkeep.node.wrapped_export import import_file
    from quorumkeep.wire.wrapped import WrappedExportError

    config = _node_config(directory)
    try:
        data = file.read_bytes()
    except OSError as exc:
        fail(f"cannot read {file} ({exc.strerror})")
    try:
        answer = import_file(config, data)
    except WrappedExportError as exc:
        fail(f"{exc.code}: {exc.message}")
    typer.echo(json.dumps(answer, sort_keys=True))
