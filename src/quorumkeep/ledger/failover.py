"""Several ledger URLs behind one client: an httpx transport that fails over between them.

A ledger URL may be a comma-separated list (``http://a:7700,http://b:7700``: the servers of
one replicated ledger). Requests go to the current server; the next one is tried

- at once, when the connection cannot be made (nothing was sent: safe for any request);
- for the next request, when a request failed after it was sent (the client's own resend
  rules decide what to do: a signed transaction is re-sent unchanged, which cannot execute
  twice), or when the server answered 503 (``LedgerUnavailable``, ``ShuttingDown``).
"""

from __future__ import annotations

import httpx

from quorumkeep.ledger.errors import LedgerError
from quorumkeep.net.http_client import default_verify


def url_problem(url: str) -> str | None:
    """Why ``url`` is not an ``http`` or ``https`` URL with a host; None when it is one."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return str(exc)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return "want http(s)://host:port"
    return None


def split_urls(base_url: str) -> list[str]:
    """The URLs of a comma-separated ledger URL (one element for a plain URL); each must be
    an ``http`` or ``https`` URL with a host, else ``InvalidLedgerUrl`` (before any request)."""
    urls = [u.strip().rstrip("/") for u in base_url.split(",") if u.strip()]
    if not urls:
        raise LedgerError("InvalidLedgerUrl", "no ledger URL given")
    for url in urls:
        problem = url_problem(url)
        if problem is not None:
            raise LedgerError("InvalidLedgerUrl", f"not a ledger URL: {url!r} ({problem})")
    return urls


def checked_ledger_url(value: str) -> str:
    """A configuration's ``ledger_url`` (one URL or a comma-separated list), normalized;
    ``ValueError`` saying why when :func:`split_urls` refuses it."""
    try:
        return ",".join(split_urls(value))
    except LedgerError as exc:
        raise ValueError(exc.message) from None


class _Rotation:
    def __init__(self, urls: list[str]) -> None:
        self.urls = [httpx.URL(u) for u in urls]
        self.current = 0

    def target(self, request: httpx.Request, index: int) -> None:
        url = self.urls[index % len(self.urls)]
        request.url = request.url.copy_with(scheme=url.scheme, host=url.host, port=url.port)

    def advance(self, index: int) -> None:
        if self.current == index:
            self.current = (index + 1) % len(self.urls)


class FailoverTransport(httpx.BaseTransport):
    def __init__(self, urls: list[str]) -> None:
        self._rotation = _Rotation(urls)
        self._inner = httpx.HTTPTransport(verify=default_verify())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        rotation = self._rotation
        for attempt in range(len(rotation.urls)):
            index = rotation.current
            rotation.target(request, index)
            try:
                response = self._inner.handle_request(request)
            except httpx.ConnectError:
                rotation.advance(index)
                if attempt == len(rotation.urls) - 1:
                    raise
                continue
            except httpx.TransportError:
                rotation.advance(index)
                raise
            if response.status_code == 503:
                rotation.advance(index)
            return response
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._inner.close()


class AsyncFailoverTransport(httpx.AsyncBaseTransport):
    def __init__(self, urls: list[str], limits: httpx.Limits | None = None) -> None:
        self._rotation = _Rotation(urls)
        self._inner = httpx.AsyncHTTPTransport(
            limits=limits or httpx.Limits(), verify=default_verify()
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        rotation = self._rotation
        for attempt in range(len(rotation.urls)):
            index = rotation.current
            rotation.target(request, index)
            try:
                response = await self._inner.handle_async_request(request)
            except httpx.ConnectError:
                rotation.advance(index)
                if attempt == len(rotation.urls) - 1:
                    raise
                continue
            except httpx.TransportError:
                rotation.advance(index)
                raise
            if response.status_code == 503:
                rotation.advance(index)
            return response
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self._inner.aclose()
