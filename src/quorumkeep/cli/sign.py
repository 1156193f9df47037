"""`quorumkeep sign …`: submit a sign request and wait for the signature."""

from __future__ import annotations


def sign_command() -> None:
    """Submit a sign request as a user and wait for the network's signature."""
    raise SystemExit("quorumkeep sign is not available yet")
