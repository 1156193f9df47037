"""`quorumkeep node …`: set up a node directory and run the node (docs/node.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer
from nacl.pwhash import argon2id

from quorumkeep.cli.keys import fail
from quorumkeep.crypto.seal import (
    DEFAULT_MEMLIMIT,
    DEFAULT_OPSLIMIT,
    MIN_MEMLIMIT,
    MIN_OPSLIMIT,
)
from quorumkeep.node.config import ConfigError, NodeConfig, config_from_mapping
from quorumkeep.node.identity import IdentityError, initialize_node
from quorumkeep.node.key_sources import key_source_from_config
from quorumkeep.node.keystore import KeystoreError

app = typer.Typer(no_args_is_help=True, help="Set up and run an MPC node.")

DEFAULT_PASSPHRASE_ENV = "QUORUMKEEP_PASSPHRASE"
KDF_COSTS = {
    # Argon2id cost of the storage key. "minimum" exists for tests and throwaway devnets.
    "moderate": (DEFAULT_OPSLIMIT, DEFAULT_MEMLIMIT),
    "interactive": (argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE),
    "minimum": (MIN_OPSLIMIT, MIN_MEMLIMIT),
}


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
