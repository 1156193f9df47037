"""Restoring a node snapshot (docs/storage.md, *Snapshots*), with its safety checks.

``read_snapshot`` checks an archive (format, members, sizes, checksums, that the files are
one node's) and ``restore_refusal`` decides, from the contract state alone, whether its
shares are still the node's (:class:`SnapshotStale` when the contract moved to a newer
epoch: only the backup service can bring that node back). ``write_restored`` writes the
directory. A restored node forgets the snapshot's presignatures when it starts
(node/incarnation.py): whatever nonce they hold may have signed since the snapshot.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import tomllib
from collections.abc import Mapping
from pathlib import Path

from quorumkeep.contract.state import ContractState, Resharing
from quorumkeep.daemon.config import write_atomically
from quorumkeep.node.config import (
    CONFIG_FILE_NAME,
    ConfigError,
    NodeConfig,
    config_from_mapping,
    write_config,
)
from quorumkeep.node.identity import IDENTITY_FILE_NAME
from quorumkeep.node.keystore import KEYSTORE_FILE_NAME
from quorumkeep.node.snapshot_format import (
    MANIFEST_NAME,
    NODE_FILES,
    ChecksumMismatch,
    Manifest,
    NotANodeDirectory,
    SnapshotError,
    SnapshotInvalid,
    archive_members,
    parse_identity,
)
from quorumkeep.node.snapshot_keystore import keystore_image, keystore_summary


class DirectoryNotEmpty(SnapshotError):
    code = "directory_not_empty"


class SnapshotStale(SnapshotError):
    """The contract moved past the snapshot's epoch: its shares are void."""

    code = "snapshot_stale"


class SnapshotSuperseded(SnapshotError):
    """The contract lists another node (another TLS key) for the account."""

    code = "snapshot_superseded"


class SnapshotMismatch(SnapshotError):
    """The snapshot's keys are not the contract's (another network, another keyset)."""

    code = "snapshot_mismatch"


# --- reading -------------------------------------------------------------------------------


def read_snapshot(path: Path) -> tuple[Manifest, dict[str, bytes]]:
    """The manifest and every file of the archive at ``path``, all checked (module doc)."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            contents = archive_members(path, tar)
    except (OSError, tarfile.TarError) as exc:
        raise SnapshotInvalid(f"{path}: not a snapshot archive ({exc})") from None
    try:
        manifest = Manifest.from_json(json.loads(contents.pop(MANIFEST_NAME)))
    except (ValueError, RecursionError):
        raise SnapshotInvalid(f"{path}: the manifest is not JSON") from None
    for entry in manifest.files:
        data = contents[entry.name]
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise ChecksumMismatch(f"{path}: {entry.name} does not match its manifest checksum")
    account, tls_key, signer_key = parse_identity(contents[IDENTITY_FILE_NAME])
    if (account, tls_key, signer_key) != (
        manifest.account,
        manifest.tls_public_key,
        manifest.signer_public_key,
    ):
        raise SnapshotInvalid(f"{path}: identity.json is not the manifest's node")
    _check_keystore(path, manifest, contents[KEYSTORE_FILE_NAME])
    return manifest, contents


def _check_keystore(path: Path, manifest: Manifest, keystore: bytes) -> None:
    """The manifest describes its keystore: owner, epoch, domains, keyset hash and number
    of presignatures are read again from the copy (the contract's check relies on them)."""
    with keystore_image(keystore) as image:
        try:
            summary = keystore_summary(image)
        except NotANodeDirectory as exc:
            raise SnapshotInvalid(f"{path}: {exc}") from None
    described = (
        manifest.account,
        manifest.tls_public_key,
        manifest.epoch,
        manifest.domains,
        manifest.keyset_hash,
        manifest.presignatures,
    )
    if summary != described:
        raise SnapshotInvalid(f"{path}: the manifest does not describe its keystore")


# --- restoring -----------------------------------------------------------------------------


def restore_refusal(manifest: Manifest, state: ContractState) -> SnapshotError | None:
    """Why the contract forbids restoring ``manifest``'s node now, or None. Pure.

    - the contract lists another TLS key for the account: a migration replaced this node
      (:class:`SnapshotSuperseded`);
    - the contract's serving epoch is newer than the snapshot's (or the snapshot holds no
      share while the account takes part): its shares are void (:class:`SnapshotStale`);
    - the same epoch with another keyset hash, or an epoch the contract never reached
      (:class:`SnapshotMismatch`).
    Before the contract serves a key there is nothing to compare: no refusal.
    """
    serving = state.serving()
    if serving is None:
        return None
    account = manifest.account
    infos = [serving.parameters.get(account)]
    protocol = state.protocol
    if isinstance(protocol, Resharing):
        infos.append(protocol.parameters.get(account))
    listed = [info for info in infos if info is not None]
    way_out = (
        "recover through the backup service instead: start a fresh node and "
        "`quorumkeep operator start-migration` to it"
    )
    if any(info.tls_public_key != manifest.tls_public_key for info in listed):
        return SnapshotSuperseded(
            f"the contract lists another node (TLS key) for {account}: a migration replaced "
            f"this snapshot's node; {way_out}"
        )
    current = serving.epoch
    if manifest.epoch is None or manifest.epoch < current:
        held = "no key share" if manifest.epoch is None else f"epoch {manifest.epoch}"
        return SnapshotStale(
            f"the snapshot holds {held} but the contract is at epoch {current}: its shares "
            f"are void; {way_out}"
        )
    if manifest.epoch == current:
        if manifest.keyset_hash != serving.keyset.hash:
            return SnapshotMismatch(
                f"the snapshot's keyset of epoch {current} is not the contract's (another network?)"
            )
        return None
    if isinstance(protocol, Resharing) and manifest.epoch == protocol.epoch:
        return None  # taken during a resharing, holding its new shares as well
    return SnapshotMismatch(
        f"the snapshot holds epoch {manifest.epoch}, which the contract (epoch {current}) "
        "never reached (another network?)"
    )


def restored_config(node_toml: bytes, directory: Path) -> NodeConfig:
    """The snapshot's ``node.toml`` as it reads from ``directory``."""
    try:
        document = tomllib.loads(node_toml.decode("utf-8"))
        return config_from_mapping(document, base_dir=directory)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, ConfigError) as exc:
        raise SnapshotInvalid(f"{CONFIG_FILE_NAME}: {exc}") from None


def write_restored(contents: Mapping[str, bytes], directory: Path) -> NodeConfig:
    """Write the files into ``directory`` (created 0700; must be absent or empty), each 0600
    and atomically; ``node.toml``'s ``data_dir`` is made the directory itself."""
    directory = directory.resolve()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise DirectoryNotEmpty(f"{directory} exists and is not an empty directory")
    config = restored_config(contents[CONFIG_FILE_NAME], directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in NODE_FILES:
        write_atomically(directory / name, contents[name])
    if config.data_dir != directory:
        config = config.model_copy(update={"data_dir": directory})
        write_config(config, directory / CONFIG_FILE_NAME)
    return config
