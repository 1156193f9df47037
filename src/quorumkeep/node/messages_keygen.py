"""The messages of key generation and resharing (channels ``dkg`` and ``reshare``).

Key events are rare and their packages are decoded by ``crypto``'s own validating decoders
(every element valid, every scalar canonical). Secret fields (``dkg_round2.share``,
``reshare_deal.sub_share``) travel only inside the mesh's TLS 1.3 connection to their one
recipient and are kept out of ``repr``. Formats: docs/node-protocols.md, "Messages".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from quorumkeep.crypto.dkg import Round1Package, Round2Package
from quorumkeep.crypto.keys import PublicKeyPackage
from quorumkeep.crypto.reshare import ResharePublicPackage, SubShare
from quorumkeep.encoding.records import kind
from quorumkeep.node.key_packages import public_key_package_from_dict, public_key_package_to_dict
from quorumkeep.node.messages_fields import (
    CHANNEL_DKG,
    CHANNEL_RESHARE,
    REASON,
    Message,
    crypto_decode,
    id_map_to_json,
    read_ascending_ids,
    read_hex,
    read_id_map,
    read_participant,
    reader,
    register,
)

HASH_SIZE = 32

# --- field kinds ---------------------------------------------------------------------------


def _crypto_reader(decode: Any) -> Any:
    return lambda value, what: crypto_decode(decode, value, what)


def _culprit(value: object, what: str) -> int | None:
    return None if value is None else read_participant(value, what)


def _secret_hex(decode: Any) -> Any:
    """A 32-byte secret (share, sub-share) as hex, decoded by crypto's validating decoder."""
    return lambda value, what: crypto_decode(decode, read_hex(value, what, 32), what)


def _to_dict(value: Any) -> Any:
    return value.to_dict()


HASH = kind(reader(read_hex, HASH_SIZE))
HASHES = kind(reader(read_id_map, HASH_SIZE), id_map_to_json)


# --- messages ------------------------------------------------------------------------------


@register
@dataclass(frozen=True, slots=True)
class SessionAbort(Message):
    """A participant gives up on a DKG or resharing session, and says why (and whom)."""

    TYPE = "abort"
    CHANNELS = frozenset({CHANNEL_DKG, CHANNEL_RESHARE})

    culprit: int | None = field(metadata=kind(_culprit))
    reason: str = field(metadata=REASON)


# -- key generation (protocols/dkg.py)


@register
@dataclass(frozen=True, slots=True)
class DkgRound1(Message):
    TYPE = "dkg_round1"
    CHANNELS = frozenset({CHANNEL_DKG})

    package: Round1Package = field(metadata=kind(_crypto_reader(Round1Package.from_dict), _to_dict))


@register
@dataclass(frozen=True, slots=True)
class DkgEcho(Message):
    """SHA-256 of every round-1 package as its sender saw it (dkg.round1_hash)."""

    TYPE = "dkg_echo"
    CHANNELS = frozenset({CHANNEL_DKG})

    hashes: Mapping[int, bytes] = field(metadata=HASHES)


@register
@dataclass(frozen=True, slots=True)
class DkgRound2(Message):
    """The secret share f_i(j); travels only inside the mesh's TLS 1.3 connection."""

    TYPE = "dkg_round2"
    CHANNELS = frozenset({CHANNEL_DKG})

    share: Round2Package = field(
        repr=False,
        metadata=kind(_secret_hex(Round2Package.from_bytes), lambda p: p.signing_share.hex()),
    )


@register
@dataclass(frozen=True, slots=True)
class DkgConfirm(Message):
    TYPE = "dkg_confirm"
    CHANNELS = frozenset({CHANNEL_DKG})

    public_key_package_hash: bytes = field(metadata=HASH)


# -- resharing (protocols/reshare.py)


@register
@dataclass(frozen=True, slots=True)
class ReshareReady(Message):
    """An old holder is live and holds its share: it can deal."""

    TYPE = "reshare_ready"
    CHANNELS = frozenset({CHANNEL_RESHARE})


@register
@dataclass(frozen=True, slots=True)
class ReshareDealers(Message):
    """The leader's choice of dealers, with the old public key package newcomers need."""

    TYPE = "reshare_dealers"
    CHANNELS = frozenset({CHANNEL_RESHARE})

    dealers: tuple[int, ...] = field(metadata=kind(read_ascending_ids, list))
    old_public: PublicKeyPackage = field(
        metadata=kind(public_key_package_from_dict, public_key_package_to_dict)
    )


@register
@dataclass(frozen=True, slots=True)
class ReshareDeal(Message):
    """A dealer's public package and the receiver's secret sub-share, in one message."""

    TYPE = "reshare_deal"
    CHANNELS = frozenset({CHANNEL_RESHARE})

    package: ResharePublicPackage = field(
        metadata=kind(_crypto_reader(ResharePublicPackage.from_dict), _to_dict)
    )
    sub_share: SubShare = field(
        repr=False, metadata=kind(_secret_hex(SubShare.from_bytes), lambda s: s.value.hex())
    )


@register
@dataclass(frozen=True, slots=True)
class ReshareConfirm(Message):
    """A receiver's view: the new public package's hash and every dealer package's hash."""

    TYPE = "reshare_confirm"
    CHANNELS = frozenset({CHANNEL_RESHARE})

    public_key_package_hash: bytes = field(metadata=HASH)
    packages: Mapping[int, bytes] = field(metadata=HASHES)
