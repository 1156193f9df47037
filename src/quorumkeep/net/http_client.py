"""The trust context of every HTTP client that verifies servers against the public trust store.

httpx builds a new SSL context for each client or transport it creates, reading certifi's
certificate bundle each time: 15 to 30 ms of CPU, paid again for every ledger client a command,
a daemon or a test makes (and for each URL of a fail-over client), although only ``https``
URLs ever use it. :func:`default_verify` builds that same context (httpx's
``create_ssl_context()``: certifi's roots, hostname checks, TLS 1.2 or later) once per process
and shares it; an ``ssl.SSLContext`` may serve many connections and threads. Clients that pin
a peer's key (the node's, a backup service's) keep their own context from wire/tls.py.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def default_verify() -> ssl.SSLContext:
    """The process's shared context for ``verify=`` (what httpx would build by default)."""
    return httpx.create_ssl_context()
