"""quorumkeep.devnet."""
