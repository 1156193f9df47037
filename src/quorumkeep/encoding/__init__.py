"""Encodings every layer shares: strict JSON parsing, length-prefixed fields, and the rules
for account names, hex and decimal text.

The bottom layer of the package: it imports nothing from quorumkeep, so ``crypto`` and
``contract`` use it as freely as the services do. Each rule is written once here; a caller
turns the neutral :class:`ValueError` these helpers raise into its own typed error (the
contract's ``InvalidArguments``, the backup protocol's ``malformed_request``, ...).
"""
