"""Wire formats and transport helpers shared by the node and the backup service."""
