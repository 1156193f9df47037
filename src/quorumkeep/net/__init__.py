"""What every process that talks over the network shares: listening sockets and the embedded
HTTP server (server.py), HTTP idle and header timeouts (http_timeouts.py), the shared trust
context of HTTP clients (http_client.py), and the one bounded
backoff with jitter that every retrying loop uses (retry.py). Beside ``encoding`` at the bottom
of the layers: it imports nothing from quorumkeep, so the ledger, the node, the backup service
and the daemons may all use it."""
