"""Cost of the threshold-crypto operations against the libsodium calls they make.

For each operation and (t, n) the bench reports ``seconds``, the median wall time of one
operation, and ``floor_seconds``, what the bare libsodium calls made by that operation
cost in this same run. Their ratio is the price of the Python around libsodium: hashing
(hashlib), bookkeeping, encodings, PyNaCl's argument checks are all on our side of it.

How the floor is measured: every libsodium function that ``quorumkeep.crypto.group``
holds as a module-level reference (``_mul``, ``_base_mul``, ``_add``, ``_s_mul``, …) is
swapped for a counting wrapper while the operation runs once; the floor is then that
many bare calls of each kind, through the same PyNaCl bindings, on realistic inputs
(prime-order points, reduced scalars). Operation and floor are timed alternately and
each reported as a median. Everything in ``quorumkeep.crypto`` reaches libsodium
through ``group``, so the count is complete.

Operations (per the unit named):
- ``round1``: one signer's ``frost.commit``;
- ``round2``: one signer's ``frost.sign`` with t signers;
- ``aggregate``: ``frost.aggregate`` of t shares, verifying every share;
- ``dkg``: one participant's three DKG parts in an n-party DKG with threshold t;
- ``reshare``: one participant's work in a resharing of a t-of-n key to a new t-of-n set
  that keeps three quarters of the old holders, every old holder dealing: its ``deal``
  as an old holder plus its ``receive`` as a new holder.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from quorumkeep.crypto import dkg, frost, group, reshare
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage, trusted_dealer_keygen

SIZES: tuple[tuple[int, int], ...] = ((2, 3), (3, 5), (7, 10), (67, 100))
QUICK_SIZES: tuple[tuple[int, int], ...] = ((2, 3), (3, 5))
OPS: tuple[str, ...] = ("round1", "round2", "aggregate", "dkg", "reshare")


@dataclass(frozen=True)
class Row:
    op: str
    t: int
    n: int
    seconds: float
    floor_seconds: float
    ratio: float


# --- counting and pricing the libsodium calls ------------------------------------------


def _sodium_references() -> dict[str, Callable[..., Any]]:
    """group's module-level references to PyNaCl's libsodium bindings."""
    return {
        name: value
        for name, value in vars(group).items()
        if name.startswith("_")
        and callable(value)
        and getattr(value, "__module__", "").startswith("nacl.bindings")
    }


@contextmanager
def _counting() -> Iterator[Counter[str]]:
    counts: Counter[str] = Counter()
    originals = _sodium_references()

    def wrap(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any) -> Any:
            counts[name] += 1
            return function(*args)

        return counted

    for name, function in originals.items():
        setattr(group, name, wrap(name, function))
    try:
        yield counts
    finally:
        for name, function in originals.items():
            setattr(group, name, function)


def _sample_arguments() -> dict[str, tuple[bytes, ...]]:
    """Realistic arguments per libsodium function (by its C name)."""
    scalar = group.random_scalar(os.urandom)
    other = group.random_scalar(os.urandom)
    point = group.base_mul(scalar)
    other_point = group.base_mul(other)
    return {
        "crypto_core_ed25519_add": (point, other_point),
        "crypto_core_ed25519_sub": (point, other_point),
        "crypto_scalarmult_ed25519_noclamp": (scalar, point),
        "crypto_scalarmult_ed25519_base_noclamp": (scalar,),
        "crypto_core_ed25519_scalar_add": (scalar, other),
        "crypto_core_ed25519_scalar_sub": (scalar, other),
        "crypto_core_ed25519_scalar_mul": (scalar, other),
        "crypto_core_ed25519_scalar_negate": (scalar,),
        "crypto_core_ed25519_scalar_invert": (scalar,),
        "crypto_core_ed25519_scalar_reduce": (os.urandom(64),),
        "crypto_core_ed25519_is_valid_point": (point,),
    }


def _floor_run(counts: Counter[str]) -> Callable[[], None]:
    """The bare libsodium calls an operation makes, as one timed unit."""
    references = _sodium_references()
    samples = _sample_arguments()
    plan = []
    for name, count in sorted(counts.items()):
        function = references[name]
        arguments = samples.get(function.__name__)
        if arguments is None:
            raise KeyError(f"no benchmark inputs for libsodium function {function.__name__}")
        plan.append((function, arguments, range(count)))

    def floor() -> None:
        for function, arguments, times in plan:
            for _ in times:
                function(*arguments)

    return floor


# --- timing operations -----------------------------------------------------------------


Operation = Callable[[int], object]
"""One run of the measured operation; the argument is the repetition number."""


def _measure(op: str, t: int, n: int, operation: Operation, repeats: int) -> Row:
    """Median time of the operation and of its floor, timed alternately.

    Alternating matters on shared or frequency-scaled machines: both medians then see
    the same conditions, so their ratio is stable even when the absolute times drift.
    """
    operation(0)  # warm-up, and anything lazily computed
    with _counting() as counts:
        operation(0)
    floor = _floor_run(counts)
    floor()
    times = []
    floor_times = []
    for k in range(repeats):
        start = time.perf_counter()
        operation(k)
        middle = time.perf_counter()
        floor()
        floor_times.append(time.perf_counter() - middle)
        times.append(middle - start)
    seconds = statistics.median(times)
    floor_seconds = statistics.median(floor_times)
    return Row(op, t, n, seconds, floor_seconds, seconds / floor_seconds)


# --- the operations --------------------------------------------------------------------


def _identifiers(n: int) -> list[int]:
    # spread out, not 1..n: the protocols must not depend on dense identifiers
    return [17 * k + 3 for k in range(1, n + 1)]


@dataclass
class _SigningSetup:
    packages: dict[int, KeyPackage]
    public: PublicKeyPackage
    signers: list[int]
    nonces: dict[int, frost.SigningNonces]
    commitment_list: list[frost.CommitmentListEntry]
    shares: dict[int, bytes]
    msg: bytes


def _signing_setup(t: int, n: int) -> _SigningSetup:
    identifiers = _identifiers(n)
    packages, public, _ = trusted_dealer_keygen(
        group.random_scalar(os.urandom), t, identifiers, os.urandom
    )
    signers = identifiers[:t]
    nonces: dict[int, frost.SigningNonces] = {}
    commitments: dict[int, frost.SigningCommitments] = {}
    for i in signers:
        nonces[i], commitments[i] = frost.commit(packages[i].signing_share, os.urandom)
    commitment_list = frost.commitment_list_from(commitments)
    msg = b"quorumkeep bench: a 32-byte-ish message to sign"
    shares = {
        i: frost.sign(
            i, packages[i].signing_share, public.group_public_key, nonces[i], msg, commitment_list
        )
        for i in signers
    }
    return _SigningSetup(packages, public, signers, nonces, commitment_list, shares, msg)


def _signing_operations(
    setup: _SigningSetup,
) -> dict[str, Operation]:
    pk = setup.public.group_public_key
    signers = setup.signers

    def round1(k: int) -> object:
        return frost.commit(setup.packages[signers[k % len(signers)]].signing_share, os.urandom)

    def round2(k: int) -> object:
        # the same nonces for every repetition: identical work, and nothing is published
        i = signers[k % len(signers)]
        return frost.sign(
            i,
            setup.packages[i].signing_share,
            pk,
            setup.nonces[i],
            setup.msg,
            setup.commitment_list,
        )

    def aggregate(k: int) -> object:
        return frost.aggregate(
            setup.commitment_list,
            setup.msg,
            pk,
            setup.shares,
            verifying_shares=setup.public.verifying_shares,
        )

    return {"round1": round1, "round2": round2, "aggregate": aggregate}


def _dkg_operation(t: int, n: int) -> Operation:
    """One participant's part1, part2 and part3; the others' messages are prepared once.

    The measured participant draws a fresh polynomial every time; the others' shares do
    not depend on it, so its part3 still checks out against the summed commitments.
    """
    participants = _identifiers(n)
    context = f"bench dkg {t}-of-{n}".encode()
    round1 = {p: dkg.part1(p, participants, t, os.urandom, context=context) for p in participants}
    packages = {p: package for p, (_, package) in round1.items()}
    round2 = {p: dkg.part2(secret, packages)[1] for p, (secret, _) in round1.items()}

    def one_participant(k: int) -> object:
        me = participants[k % n]
        secret1, _ = dkg.part1(me, participants, t, os.urandom, context=context)
        received1 = {p: packages[p] for p in participants if p != me}
        secret2, _ = dkg.part2(secret1, received1)
        received2 = {p: round2[p][me] for p in participants if p != me}
        return dkg.part3(secret2, received1, received2)

    return one_participant


def _reshare_operation(setup: _SigningSetup, t: int, n: int) -> Operation:
    """One participant that deals (as an old holder) and receives (as a new holder).

    Every old holder deals; the new set keeps three quarters of the old one and adds
    newcomers, with the same threshold. The other dealers' messages are prepared once.
    """
    old = sorted(setup.public.verifying_shares)
    leaving = n // 4
    new = old[: n - leaving] + [100_000 + k for k in range(leaving)]
    dealt = {i: reshare.deal(setup.packages[i], setup.public, old, new, t, os.urandom) for i in old}
    staying = old[: n - leaving]

    def one_participant(k: int) -> object:
        me = staying[k % len(staying)]
        package, sub_shares = reshare.deal(
            setup.packages[me], setup.public, old, new, t, os.urandom
        )
        packages = {i: dealt[i][0] for i in old}
        packages[me] = package
        received = {i: dealt[i][1][me] for i in old}
        received[me] = sub_shares[me]
        return reshare.receive(me, setup.public, old, new, t, packages, received)

    return one_participant


def _repeats(op: str, t: int, quick: bool) -> int:
    if quick:
        return 2
    if t >= 50:
        return {"round1": 100, "round2": 15, "aggregate": 7, "dkg": 3, "reshare": 3}[op]
    return {"round1": 200, "round2": 60, "aggregate": 40, "dkg": 15, "reshare": 15}[op]


def run(
    sizes: Sequence[tuple[int, int]] = SIZES,
    ops: Sequence[str] = OPS,
    quick: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[Row]:
    """Measure every op at every (t, n); ``quick`` keeps repetitions to a minimum."""
    rows: list[Row] = []
    for t, n in sizes:
        setup = _signing_setup(t, n)
        operations = _signing_operations(setup)
        if "dkg" in ops:
            operations["dkg"] = _dkg_operation(t, n)
        if "reshare" in ops:
            operations["reshare"] = _reshare_operation(setup, t, n)
        for op in ops:
            if progress is not None:
                progress(f"{op} at t={t}, n={n}")
            rows.append(_measure(op, t, n, operations[op], _repeats(op, t, quick)))
    return rows


def rows_as_json(rows: Sequence[Row]) -> list[dict[str, Any]]:
    return [asdict(row) for row in rows]
