"""What a node operator does with its full-access key: register the backup service, move
the node to a new machine (start, follow, cancel a migration). The CLI (`quorumkeep
operator …`) and the devnet demo both call these functions, so what the demo shows is what
an operator types."""
