"""quorumkeep.ledger: the embedded ledger that hosts the MPC contract (docs/ledger.md).

Modules, from the bottom up:

- ``canonical``   canonical JSON, the byte encoding of everything signed or hashed
- ``transaction`` transactions, actions, access-key permissions, signing bytes and hashes
- ``accounts``    accounts and access keys; who may sign which action
- ``blocks``      blocks, outcomes, block and state hashes
- ``chain``       the deterministic state machine: build a block, replay and verify a chain
- ``storage``     the block log in one SQLite file (WAL, fsync per block)
- ``node``        the block producer: group commit, idle blocks, long-poll events
- ``server``      the FastAPI app and the uvicorn runner of `quorumkeep ledger serve`
- ``client``      ``LedgerClient`` / ``AsyncLedgerClient`` / ``AccountSigner``
- ``keyfile``     passphrase-sealed Ed25519 key files
- ``genesis``     creating a ledger directory (`quorumkeep ledger init`)
- ``errors``      ``LedgerError``, ``ContractCallFailed``, ``LedgerCorrupted``
"""
