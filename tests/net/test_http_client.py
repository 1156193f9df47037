"""The shared trust context of HTTP clients: built once, and as strict as httpx's default."""

from __future__ import annotations

import ssl

from quorumkeep.net.http_client import default_verify


def test_one_context_per_process_that_verifies_servers() -> None:
    context = default_verify()
    assert default_verify() is context
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.cert_store_stats()["x509_ca"] > 0  # the public roots are loaded
