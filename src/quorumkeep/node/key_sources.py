"""The storage-key source a ``node.toml`` names: a passphrase, or key providers (peers)."""

from __future__ import annotations

from quorumkeep.crypto.seal import DEFAULT_MEMLIMIT, DEFAULT_OPSLIMIT
from quorumkeep.node.config import NodeConfig, PeersKeyConfig
from quorumkeep.node.key_providers import PeersKeySource, Progress
from quorumkeep.node.keystore import KeySource, passphrase_source_from_config


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
        return PeersKeySource(
            config.data_dir,
            account=config.account,
            ledger_url=config.ledger_url,
            threshold=source.threshold,
            providers=source.providers,
            wait=source.wait,
            progress=progress,
        )
    return passphrase_source_from_config(config, opslimit=opslimit, memlimit=memlimit)
