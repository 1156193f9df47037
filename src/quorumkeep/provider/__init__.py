"""The key-provider service: holds pieces of other operators' node storage keys, sealed at rest
(docs/key-provider-protocol.md)."""
