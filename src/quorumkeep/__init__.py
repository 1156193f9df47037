"""quorumkeep: a threshold-signing network whose operators never lose the signing key."""

__version__ = "0.1.0"
