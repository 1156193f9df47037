"""quorumkeep.ledger: the embedded ledger that hosts the MPC contract (docs/ledger.md).

Modules, from the bottom up:

- ``canonical``   canonical JSON, the byte encoding of everything signed or hashed
- ``transaction`` transactions, actions, access-key permissions, signing bytes and hashes
- ``accounts``    accounts and access keys; who may sign which action
- ``blocks``      blocks, outcomes, block hashes
- ``state_hash``  the state hash, incremental over the pending sign requests
- ``chain``       the deterministic state machine: build a block, replay and verify a chain
- ``storage``     the block log in one SQLite file (WAL, fsync per block)
- ``snapshot``    snapshots, start-up from the newest that verifies, prune, verify
- ``node``        the block producer: group commit, blocks when something falls due,
                  long-poll events; ``BlockBackend`` (SQLite by default)
- ``etcd``        a small etcd v3 JSON-gateway client
- ``replicated``  the ledger replicated on etcd: proposer lease, compare-and-create, watch
- ``server``      the FastAPI app and the uvicorn runner of `quorumkeep ledger serve`
- ``client``      ``LedgerClient`` / ``AsyncLedgerClient`` / ``AccountSigner``
- ``failover``    several ledger URLs behind one client
- ``keyfile``     passphrase-sealed Ed25519 key files
- ``genesis``     creating a ledger directory (`quorumkeep ledger init`)
- ``errors``      ``LedgerError``, ``ContractCallFailed``, ``LedgerCorrupted``
"""
