"""A small etcd v3 client over etcd's JSON gateway (``/v3/...``), on httpx.

Only what the replicated ledger needs: range reads, compare-and-create transactions, leases
and a watch. Keys and values are bytes (base64 on the wire, as the gateway wants);
revisions and lease ids are decimal strings on the wire. Each call tries the endpoints in
turn, starting from the last one that answered, so a dead member is skipped; when none
answers, :class:`EtcdUnavailable`. Any member answers for the cluster (etcd forwards writes
to its Raft leader; reads are linearizable by default).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from quorumkeep.net.http_client import default_verify


class EtcdError(Exception):
    """etcd refused a request (an answer other than 200)."""


class EtcdUnavailable(EtcdError):
    """No endpoint answered."""


class EtcdLeaseNotFound(EtcdError):
    """etcd does not know the lease a request named (it expired or was revoked)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_end(prefix: bytes) -> bytes:
    """The range end that selects every key starting with ``prefix``."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"


@dataclass(frozen=True)
class KeyValue:
    key: bytes
    value: bytes
    mod_revision: int
    lease: int

    @classmethod
    def from_json(cls, kv: dict[str, Any]) -> KeyValue:
        return cls(
            _unb64(kv["key"]),
            _unb64(kv.get("value", "")),
            int(kv.get("mod_revision", 0)),
            int(kv.get("lease", 0)),
        )


class _Endpoints:
    def __init__(self, endpoints: Sequence[str]) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self.urls = [u.rstrip("/") for u in endpoints]
        self.current = 0

    def order(self) -> list[int]:
        n = len(self.urls)
        return [(self.current + i) % n for i in range(n)]


def _check(response: httpx.Response) -> dict[str, Any]:
    if response.status_code == 404 and "lease not found" in response.text:
        raise EtcdLeaseNotFound(f"etcd answered 404: {response.text[:200]}")
    if response.status_code != 200:
        raise EtcdError(f"etcd answered {response.status_code}: {response.text[:200]}")
    body: dict[str, Any] = response.json()
    return body


def _range_body(
    key: bytes, range_end: bytes | None, limit: int, revision: int, keys_only: bool = False
) -> dict[str, Any]:
    body: dict[str, Any] = {"key": _b64(key)}
    if keys_only:
        body["keys_only"] = True
    if range_end is not None:
        body["range_end"] = _b64(range_end)
    if limit:
        body["limit"] = str(limit)
    if revision:
        body["revision"] = str(revision)
    return body


def create_txn(
    key: bytes,
    value: bytes,
    *,
    lease: int = 0,
    holder: tuple[bytes, bytes] | None = None,
    also: Sequence[tuple[bytes, bytes]] = (),
) -> dict[str, Any]:
    """Put ``key`` only if it does not exist (and, with ``holder`` = (key, value), only
    while that key holds that value): etcd's compare-and-create; ``also`` are more puts
    made in the same transaction."""
    compare: list[dict[str, Any]] = [
        {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
    ]
    if holder is not None:
        compare.append(
            {"key": _b64(holder[0]), "target": "VALUE", "result": "EQUAL", "value": _b64(holder[1])}
        )
    put: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
    if lease:
        put["lease"] = str(lease)
    success = [{"request_put": put}]
    success += [{"request_put": {"key": _b64(k), "value": _b64(v)}} for k, v in also]
    return {"compare": compare, "success": success}


class EtcdSync:
    """Blocking client, for start-up (before the event loop runs) and for tools."""

    def __init__(self, endpoints: Sequence[str], *, timeout: float = 5.0) -> None:
        self._endpoints = _Endpoints(endpoints)
        self._http = httpx.Client(timeout=timeout, verify=default_verify())

    def close(self) -> None:
        self._http.close()

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        last: Exception | None = None
        for i in self._endpoints.order():
            try:
                response = self._http.post(self._endpoints.urls[i] + path, json=body)
            except httpx.TransportError as exc:
                last = exc
                continue
            if response.status_code >= 500:
                last = EtcdError(f"etcd answered {response.status_code}")
                continue
            self._endpoints.current = i
            return _check(response)
        raise EtcdUnavailable(f"no etcd endpoint answered ({last})")

    def range(
        self, key: bytes, range_end: bytes | None = None, *, limit: int = 0, keys_only: bool = False
    ) -> tuple[list[KeyValue], int, bool]:
        """(key-values in key order, the store revision, whether more remain)."""
        body = self.post("/v3/kv/range", _range_body(key, range_end, limit, 0, keys_only))
        kvs = [KeyValue.from_json(kv) for kv in body.get("kvs", [])]
        return kvs, int(body["header"]["revision"]), bool(body.get("more", False))

    def create(self, key: bytes, value: bytes) -> bool:
        body = self.post("/v3/kv/txn", create_txn(key, value))
        return bool(body.get("succeeded", False))

    def put(self, key: bytes, value: bytes) -> None:
        self.post("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})


class EtcdAsync:
    """The asyncio client the running ledger uses."""

    def __init__(self, endpoints: Sequence[str], *, timeout: float = 5.0) -> None:
        self._endpoints = _Endpoints(endpoints)
        self._http = httpx.AsyncClient(timeout=timeout, verify=default_verify())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        last: Exception | None = None
        for i in self._endpoints.order():
            try:
                response = await self._http.post(self._endpoints.urls[i] + path, json=body)
            except httpx.TransportError as exc:
                last = exc
                continue
            if response.status_code >= 500:
                last = EtcdError(f"etcd answered {response.status_code}")
                continue
            self._endpoints.current = i
            return _check(response)
        raise EtcdUnavailable(f"no etcd endpoint answered ({last})")

    async def range(
        self, key: bytes, range_end: bytes | None = None, *, limit: int = 0
    ) -> tuple[list[KeyValue], int, bool]:
        body = await self.post("/v3/kv/range", _range_body(key, range_end, limit, 0))
        kvs = [KeyValue.from_json(kv) for kv in body.get("kvs", [])]
        return kvs, int(body["header"]["revision"]), bool(body.get("more", False))

    async def get(self, key: bytes) -> KeyValue | None:
        kvs, _, _ = await self.range(key)
        return kvs[0] if kvs else None

    async def create(
        self, key: bytes, value: bytes, *, lease: int = 0, holder: tuple[bytes, bytes] | None = None
    ) -> bool:
        body = await self.post("/v3/kv/txn", create_txn(key, value, lease=lease, holder=holder))
        return bool(body.get("succeeded", False))

    async def put(self, key: bytes, value: bytes) -> None:
        await self.post("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    async def delete(self, key: bytes) -> None:
        await self.post("/v3/kv/deleterange", {"key": _b64(key)})

    async def grant(self, ttl_s: int) -> int:
        body = await self.post("/v3/lease/grant", {"TTL": str(ttl_s)})
        return int(body["ID"])

    async def keepalive(self, lease: int) -> int:
        """Refresh ``lease``; its remaining TTL in seconds (0: it expired)."""
        body = await self.post("/v3/lease/keepalive", {"ID": str(lease)})
        return int(body.get("result", {}).get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        await self.post("/v3/lease/revoke", {"ID": str(lease)})

    async def watch(
        self, key: bytes, range_end: bytes, start_revision: int
    ) -> AsyncIterator[KeyValue]:
        """Every put under [key, range_end) from ``start_revision`` on, in revision order.
        Ends (returns) when the stream breaks; the caller resumes from the last revision."""
        body = {
            "create_request": {
                "key": _b64(key),
                "range_end": _b64(range_end),
                "start_revision": str(start_revision),
            }
        }
        for i in self._endpoints.order():
            url = self._endpoints.urls[i] + "/v3/watch"
            try:
                async with self._http.stream(
                    "POST", url, json=body, timeout=httpx.Timeout(5.0, read=None)
                ) as response:
                    if response.status_code != 200:
                        continue
                    self._endpoints.current = i
                    async for line in response.aiter_lines():
                        if not line.strip():
                            continue
                        message = json.loads(line)
                        result = message.get("result", {})
                        if "error" in message or result.get("canceled"):
                            return
                        for event in result.get("events", []):
                            if event.get("type", "PUT") == "PUT":
                                yield KeyValue.from_json(event["kv"])
                    return
            except httpx.TransportError:
                continue
        raise EtcdUnavailable("no etcd endpoint accepted a watch")
