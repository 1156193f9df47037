"""What the node and the backup service — the two long-running processes an operator runs —
share: the sealed SQLite file's settings, TOML configuration and passphrase sources, start-up
(ledger wait, logging, exit codes) and Prometheus exposition. Imports only from below."""
