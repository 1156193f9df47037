"""quorumkeep.contract."""
