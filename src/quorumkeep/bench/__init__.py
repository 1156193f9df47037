"""Benchmarks behind `quorumkeep bench …` (JSON output; never timed assertions in tests)."""
