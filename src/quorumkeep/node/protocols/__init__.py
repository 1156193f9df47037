"""The node's MPC protocols over the mesh: key generation, resharing, presignatures, signing.

Formats and message flows: docs/node-protocols.md.
"""
