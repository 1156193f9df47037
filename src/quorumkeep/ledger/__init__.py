"""quorumkeep.ledger."""
