"""Emergency recovery: offline tools for when the network and its company are gone.

``keys`` makes the offline RSA recovery key; ``bundle`` reads and publicly verifies a
recovery bundle (every participant's share verifiably encrypted to that key, with the
domain's public key package); ``recover`` decrypts a bundle with the private key, rebuilds
the group secret, derives per-(account, path) keys and signs. docs/emergency-recovery.md
specifies the formats.

This package runs on an offline machine: it imports nothing from ``quorumkeep.node`` or
``quorumkeep.ledger`` and opens no socket (tests check the imports).
"""
