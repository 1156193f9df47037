"""The threshold-cryptography story, in one process: DKG → sign → reshare → sign.

It runs every participant's part of each protocol locally, exchanging the same packages the
nodes exchange over the mesh, and checks each signature with PyNaCl as a plain Ed25519
signature. ``make demo`` ran this until the network demo (``devnet demo``) replaced it; it
stays as the smallest end-to-end check of the crypto core.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nacl.signing import VerifyKey

from quorumkeep.crypto import dkg, frost, reshare
from quorumkeep.crypto.derive import derivation_tweak, derive_public_key
from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage


@dataclass(frozen=True)
class StorySignature:
    signers: tuple[int, ...]
    message: bytes
    public_key: bytes
    signature: bytes


@dataclass(frozen=True)
class StoryResult:
    group_public_key: bytes
    signatures: tuple[StorySignature, ...]


def run_dkg(
    participants: Sequence[int], threshold: int, random_bytes: RandomBytes, context: bytes
) -> tuple[dict[int, KeyPackage], PublicKeyPackage]:
    """Every participant's three DKG parts; all must agree on the public key package."""
    round1 = {
        i: dkg.part1(i, participants, threshold, random_bytes, context=context)
        for i in participants
    }
    packages1 = {i: pkg for i, (_, pkg) in round1.items()}
    round2 = {i: dkg.part2(secret, packages1) for i, (secret, _) in round1.items()}
    keys: dict[int, KeyPackage] = {}
    publics: list[PublicKeyPackage] = []
    for i in participants:
        received = {sender: out[i] for sender, (_, out) in round2.items() if sender != i}
        others = {p: pkg for p, pkg in packages1.items() if p != i}
        key, public = dkg.part3(round2[i][0], others, received)
        keys[i] = key
        publics.append(public)
    if any(p != publics[0] for p in publics):
        raise RuntimeError("DKG participants disagree on the public key package")
    return keys, publics[0]


def run_reshare(
    keys: dict[int, KeyPackage],
    old_public: PublicKeyPackage,
    dealers: Sequence[int],
    new_participants: Sequence[int],
    new_threshold: int,
    random_bytes: RandomBytes,
) -> tuple[dict[int, KeyPackage], PublicKeyPackage]:
    dealt = {
        d: reshare.deal(keys[d], old_public, dealers, new_participants, new_threshold, random_bytes)
        for d in dealers
    }
    public_packages = {d: pkg for d, (pkg, _) in dealt.items()}
    new_keys: dict[int, KeyPackage] = {}
    publics: list[PublicKeyPackage] = []
    for j in new_participants:
        sub_shares = {d: subs[j] for d, (_, subs) in dealt.items()}
        key, public = reshare.receive(
            j, old_public, dealers, new_participants, new_threshold, public_packages, sub_shares
        )
        new_keys[j] = key
        publics.append(public)
    if any(p != publics[0] for p in publics):
        raise RuntimeError("resharing receivers disagree on the new public key package")
    return new_keys, publics[0]


def threshold_sign(
    keys: dict[int, KeyPackage],
    public: PublicKeyPackage,
    signers: Sequence[int],
    message: bytes,
    random_bytes: RandomBytes,
    *,
    account: str = "",
    path: str = "",
) -> tuple[bytes, bytes]:
    """FROST rounds 1 and 2 by ``signers`` and aggregation; returns (public key, signature)."""
    tweak = derivation_tweak(account, path)
    signing_key = derive_public_key(public.group_public_key, account, path)
    round1 = {i: frost.commit(keys[i].signing_share, random_bytes) for i in signers}
    commitment_list = frost.commitment_list_from({i: c for i, (_, c) in round1.items()})
    shares = {
        i: frost.sign(i, keys[i].signing_share, signing_key, nonces, message, commitment_list)
        for i, (nonces, _) in round1.items()
    }
    signature = frost.aggregate(
        commitment_list,
        message,
        signing_key,
        shares,
        verifying_shares=public.verifying_shares,
        tweak=tweak,
    )
    return signing_key, signature


def run(
    say: Callable[[str], None] = print,
    random_bytes: RandomBytes = os.urandom,
    seed: int | None = None,
) -> StoryResult:
    chooser = random.Random(seed)
    signatures: list[StorySignature] = []

    def sign_and_check(
        keys: dict[int, KeyPackage], public: PublicKeyPackage, signers: list[int], path: str
    ) -> None:
        message = f"quorumkeep demo payment {len(signatures) + 1}".encode()
        started = time.perf_counter()
        public_key, signature = threshold_sign(
            keys, public, signers, message, random_bytes, account="demo.user", path=path
        )
        VerifyKey(public_key).verify(message, signature)  # raises if invalid
        ms = (time.perf_counter() - started) * 1000
        signatures.append(StorySignature(tuple(signers), message, public_key, signature))
        say(
            f"  signers {signers} signed {message.decode()!r} under path {path!r} in {ms:.1f} ms;"
            f" PyNaCl verifies it against {public_key.hex()[:16]}…"
        )

    participants = [1, 2, 3, 4, 5]
    say("1. Distributed key generation (PedPoP), 5 participants, threshold 3")
    started = time.perf_counter()
    keys, public = run_dkg(participants, 3, random_bytes, context=b"quorumkeep demo dkg")
    say(
        f"  group public key {public.group_public_key.hex()}"
        f" ({(time.perf_counter() - started) * 1000:.0f} ms; nobody ever held the secret)"
    )

    say("2. Threshold signature by 3 of the 5")
    sign_and_check(keys, public, sorted(chooser.sample(participants, 3)), "wallet/0")

    new_participants = [2, 3, 4, 6, 7, 8]
    dealers = [2, 3, 4]
    say(
        f"3. Resharing: dealers {dealers} hand the key to {new_participants} with threshold 4;"
        " participants 1 and 5 leave"
    )
    started = time.perf_counter()
    new_keys, new_public = run_reshare(keys, public, dealers, new_participants, 4, random_bytes)
    if new_public.group_public_key != public.group_public_key:
        raise RuntimeError("resharing changed the group public key")
    say(
        f"  same group public key, fresh shares for the new set"
        f" ({(time.perf_counter() - started) * 1000:.0f} ms)"
    )

    say("4. Threshold signature by 4 of the new set, under the unchanged key")
    sign_and_check(new_keys, new_public, sorted(chooser.sample(new_participants, 4)), "wallet/1")
    say("The story holds: one key, generated without a dealer, moved to a new set, still signing.")
    return StoryResult(public.group_public_key, tuple(signatures))
