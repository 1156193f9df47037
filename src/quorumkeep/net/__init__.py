"""Listening sockets and the embedded HTTP server shared by every process that serves HTTP
(ledger, node web API, backup service status). Beside ``encoding`` at the bottom of the
layers: it imports nothing from quorumkeep."""
