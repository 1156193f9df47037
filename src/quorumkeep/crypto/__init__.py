"""Threshold cryptography on libsodium: pure functions, no I/O.

Modules, one per concept: ``group`` (edwards25519 and its scalars), ``frost`` (RFC 9591
signing), ``keys`` (trusted-dealer keygen and VSS), ``dkg`` (PedPoP), ``reshare``
(resharing and refresh), ``repair`` (repairable threshold scheme), ``derive`` (per-account
key derivation), ``seal`` (authenticated encryption to a key or a passphrase),
``encoding`` (wire encodings and validating decoders shared by the protocol modules),
``vectors`` (RFC 9591 test-vector recomputation).
"""
