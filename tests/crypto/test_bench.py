"""`quorumkeep bench crypto`: the shape of its output (never its timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from quorumkeep.bench import crypto as crypto_bench
from quorumkeep.crypto import frost, group

CLI = Path(sys.executable).parent / "quorumkeep"


@pytest.mark.slow
def test_bench_json_has_every_op_and_size_with_positive_numbers() -> None:
    done = subprocess.run(
        [str(CLI), "bench", "crypto", "--json", "--quick"], capture_output=True, timeout=300
    )
    assert done.returncode == 0, done.stderr.decode()
    rows = json.loads(done.stdout)
    assert isinstance(rows, list)
    for row in rows:
        assert list(row) == ["op", "t", "n", "seconds", "floor_seconds", "ratio"]
        assert isinstance(row["t"], int) and isinstance(row["n"], int)
        for key in ("seconds", "floor_seconds", "ratio"):
            assert isinstance(row[key], float) and row[key] > 0
        assert abs(row["ratio"] - row["seconds"] / row["floor_seconds"]) < 1e-9
    assert [(r["op"], r["t"], r["n"]) for r in rows] == [
        (op, t, n) for t, n in crypto_bench.QUICK_SIZES for op in crypto_bench.OPS
    ]


def test_counting_sees_every_libsodium_call_of_an_operation() -> None:
    """The floor is only honest if the counting wrappers catch the calls frost makes."""
    share = group.random_scalar(lambda n: bytes(range(n)))
    with crypto_bench._counting() as counts:
        frost.commit(share, lambda n: bytes(n))
    # two nonces: H3 reduces twice; two commitments: two base multiplications
    assert counts == {"_s_reduce": 2, "_base_mul": 2}
    # and the originals are back afterwards
    assert all(
        f.__module__.startswith("nacl.bindings") for f in crypto_bench._sodium_references().values()
    )
    assert set(crypto_bench._sodium_references()) >= {"_mul", "_base_mul", "_add", "_s_mul"}
