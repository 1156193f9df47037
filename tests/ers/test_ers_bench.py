"""`quorumkeep bench ers`: the shape of its result (never its timings)."""

from __future__ import annotations

from quorumkeep.bench import ers as ers_bench


def test_bench_rows_have_every_op_with_positive_numbers() -> None:
    result = ers_bench.run(repeat=1, bits=(2048,))
    assert result["goal_ratio"] == 3.0
    assert [r["op"] for r in result["rows"]] == ["encrypt", "verify", "decrypt"]
    for row in result["rows"]:
        assert row["rsa_bits"] == 2048 and row["kappa"] == 128
        assert row["ms"] > 0 and row["cb_mpc_rsa2048_ms"] == ers_bench.CB_MPC_MS[row["op"]]
        assert abs(row["ratio"] - row["ms"] / row["cb_mpc_rsa2048_ms"]) < 0.01
        assert row["part_bytes"] > 128 * 256
        assert (row["floor_ms"] is None) == (row["op"] == "decrypt")
    assert isinstance(result["meets_goal_rsa2048"], bool)
