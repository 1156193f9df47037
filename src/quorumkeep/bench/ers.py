"""Emergency recovery: encrypt, verify and decrypt of one share (κ = 128), per RSA size.

Each row times the median of ``repeat`` runs of ``crypto.pve`` on a fresh random share,
with RSA-2048 (cb-mpc's published base) and RSA-3072 (quorumkeep's default), and puts
cb-mpc's published RSA-2048 figures beside them (``CB_MPC_MS``: Coinbase's cb-mpc PVE
benchmark, ``ec_pve_t`` with RSA-OAEP-2048, κ = 128). ``ratio`` = ours / cb-mpc's (the goal
is ≤ 3 at the same κ); RSA-3072 rows are compared with the same RSA-2048 figures, since cb-mpc
publishes no 3072 row. Decrypt is of one part: standard RSA-OAEP of the first row plus the
check x·G = X (the honest case). ``floor_ms`` times, in the same run, the bare GMP and
libsodium calls the operation makes (κ or 2κ RSA public operations, κ base multiplications),
so the Python overhead can be read independently of the machine's load, which
``load_average_1min`` records. Numbers are this machine's; nothing asserts on them.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import gmpy2
from cryptography.hazmat.primitives.asymmetric import rsa

from quorumkeep.crypto import pve
from quorumkeep.crypto.group import base_mul, random_scalar

CB_MPC_MS = {"encrypt": 10.8, "verify": 6.6, "decrypt": 7.3}
GOAL_RATIO = 3.0
BITS = (2048, 3072)


def _median_ms(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def _floor_ms(public: pve.RecoveryPublicKey, pows: int, muls: int, repeat: int) -> float:
    """The bare GMP and libsodium calls an operation makes: ``pows`` RSA public operations
    and ``muls`` base-point multiplications (the rest is hashing and Python)."""
    m = int.from_bytes(os.urandom(public.size - 1), "big")
    s = random_scalar(os.urandom)

    def calls() -> None:
        for _ in range(pows):
            gmpy2.powmod(m, public.e, public.n)
        for _ in range(muls):
            base_mul(s)

    return _median_ms(calls, repeat)


def _measure(size: int, repeat: int) -> list[dict[str, Any]]:
    private = rsa.generate_private_key(public_exponent=pve.PUBLIC_EXPONENT, key_size=size)
    public = pve.RecoveryPublicKey.from_private(private)
    share = random_scalar(os.urandom)
    point = base_mul(share)
    label = pve.Label(0, 1, "bench", 1, bytes(32)).encode()
    part = pve.encrypt(public, share, label, os.urandom)
    encoded = part.encode()
    kappa = pve.KAPPA
    timings = {
        "encrypt": (
            _median_ms(lambda: pve.encrypt(public, share, label, os.urandom), repeat),
            _floor_ms(public, 2 * kappa, kappa, repeat),
        ),
        "verify": (
            _median_ms(lambda: pve.verify(public, pve.Part.decode(encoded), point, label), repeat),
            _floor_ms(public, kappa, kappa, repeat),
        ),
        "decrypt": (_median_ms(lambda: pve.decrypt(private, part, label), repeat), None),
    }
    return [
        {
            "op": op,
            "rsa_bits": size,
            "kappa": kappa,
            "ms": round(ms, 3),
            "floor_ms": None if floor is None else round(floor, 3),
            "cb_mpc_rsa2048_ms": CB_MPC_MS[op],
            "ratio": round(ms / CB_MPC_MS[op], 2),
            "part_bytes": len(encoded),
        }
        for op, (ms, floor) in timings.items()
    ]


def run(repeat: int = 20, bits: tuple[int, ...] = BITS) -> dict[str, Any]:
    rows = [row for size in bits for row in _measure(size, repeat)]
    return {
        "goal_ratio": GOAL_RATIO,
        "repeat": repeat,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "rows": rows,
        "meets_goal_rsa2048": all(r["ratio"] <= GOAL_RATIO for r in rows if r["rsa_bits"] == 2048),
    }
