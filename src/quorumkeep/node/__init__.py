"""quorumkeep.node."""
