"""quorumkeep.backup."""
