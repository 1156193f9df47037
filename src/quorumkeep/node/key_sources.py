"""The storage-key source a ``node.toml`` names: a passphrase, or key providers (peers)."""

from __future__ import annotations

from quorumkeep import __version__
from quorumkeep.crypto.seal import DEFAULT_MEMLIMIT, DEFAULT_OPSLIMIT
from quorumkeep.daemon.attestation import AttestationUnavailable, quote_source
from quorumkeep.node.config import NodeConfig, PeersKeyConfig
from quorumkeep.node.key_providers import PeersKeySource, Progress
from quorumkeep.node.keystore_errors import StorageKeyUnavailable
from quorumkeep.node.storage_key import KeySource, passphrase_source_from_config


def key_source_from_config(
    config: NodeConfig,
    *,
    opslimit: int = DEFAULT_OPSLIMIT,
    memlimit: int = DEFAULT_MEMLIMIT,
    progress: Progress | None = None,
) -> KeySource:
    """The :class:`KeySource` ``config`` names (the Argon2id cost applies when creating)."""
    source = config.storage_key
    if isinstance(source, PeersKeyConfig):
        quote = None
        if config.attestation is not None:
            try:
                quotes = quote_source(config.attestation, f"quorumkeep-node {__version__}")
            except AttestationUnavailable as exc:
                raise StorageKeyUnavailable(f"attestation: {exc}") from None
            if quotes is not None:
                quote = quotes.evidence
        return PeersKeySource(
            config.data_dir,
            account=config.account,
            ledger_url=config.ledger_url,
            threshold=source.threshold,
            providers=source.providers,
            wait=source.wait,
            progress=progress,
            quote=quote,
        )
    return passphrase_source_from_config(config, opslimit=opslimit, memlimit=memlimit)
