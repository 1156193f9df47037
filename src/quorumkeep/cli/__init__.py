"""The `quorumkeep` command: thin Typer wrappers over the packages."""
