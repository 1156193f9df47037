"""The ledger's state hash, kept up to date incrementally.

    state_hash = SHA-256("quorumkeep-state-v2" || 0x00 || canonical_json(
                     {"accounts": accounts.to_json(),
                      "contract": contract.to_json() without "sign_requests",
                      "sign_requests_root": hex(root)}))

``root`` commits to the pending sign requests as a sparse Merkle tree of depth 53 indexed
by request id (ids are below 2^53), with the node hashing of RFC 6962 §2.1 (a 0x00 prefix
for leaves, 0x01 for interior nodes) and an empty subtree of height ``d`` hashed as
``E_0 = SHA-256(0x00)``, ``E_{d+1} = SHA-256(0x01 || E_d || E_d)``:

    leaf(request)   = SHA-256(0x00 || canonical_json(request.to_json()))
    node(l, r)      = SHA-256(0x01 || l || r)

The tree depends only on the set of pending requests, not on the order they came and went,
so equal states have equal hashes. Adding or removing a request re-hashes its 53 ancestors;
the rest of the state is re-encoded as before, so a block's hashing cost no longer grows
with the number of pending requests (which may reach ``max_pending_requests``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from quorumkeep.ledger.canonical import canonical_json

STATE_DOMAIN = b"quorumkeep-state-v2\x00"
DEPTH = 53
_LEAF = b"\x00"
_NODE = b"\x01"


def _empty_hashes() -> list[bytes]:
    hashes = [hashlib.sha256(_LEAF).digest()]
    for _ in range(DEPTH):
        hashes.append(hashlib.sha256(_NODE + hashes[-1] + hashes[-1]).digest())
    return hashes


EMPTY = _empty_hashes()


def leaf_hash(request_json: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(_LEAF + canonical_json(dict(request_json))).digest()


class RequestTree:
    """The sparse Merkle tree of the pending requests; ``sync`` brings it to a new set."""

    def __init__(self) -> None:
        # (level, index) -> hash, for non-empty subtrees only; level 0 are the leaves.
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._leaves: dict[int, bytes] = {}

    @property
    def root(self) -> bytes:
        return self._nodes.get((DEPTH, 0), EMPTY[DEPTH])

    def _set(self, index: int, leaf: bytes | None) -> None:
        if not 0 <= index < 1 << DEPTH:
            raise ValueError(f"request id {index} is outside the tree")
        nodes = self._nodes
        if leaf is None:
            nodes.pop((0, index), None)
        else:
            nodes[(0, index)] = leaf
        for level in range(DEPTH):
            index >>= 1
            left = nodes.get((level, 2 * index), EMPTY[level])
            right = nodes.get((level, 2 * index + 1), EMPTY[level])
            if left == EMPTY[level] and right == EMPTY[level]:
                nodes.pop((level + 1, index), None)
            else:
                nodes[(level + 1, index)] = hashlib.sha256(_NODE + left + right).digest()

    def sync(self, requests: Mapping[int, Any]) -> None:
        """Match the tree to ``requests`` (id -> request with ``to_json()``). A pending
        request never changes (requests are immutable and ids never reused), so only ids
        that came or went are hashed."""
        leaves = self._leaves
        if len(leaves) == len(requests) and leaves.keys() == requests.keys():
            return
        for gone in leaves.keys() - requests.keys():
            del leaves[gone]
            self._set(gone, None)
        for new in requests.keys() - leaves.keys():
            leaf = leaf_hash(requests[new].to_json())
            leaves[new] = leaf
            self._set(new, leaf)


def state_hash(
    accounts_json: dict[str, Any], contract_json: dict[str, Any], requests_root: bytes
) -> bytes:
    """``contract_json`` is the contract's state without its ``sign_requests``."""
    return hashlib.sha256(
        STATE_DOMAIN
        + canonical_json(
            {
                "accounts": accounts_json,
                "contract": contract_json,
                "sign_requests_root": requests_root.hex(),
            }
        )
    ).digest()
