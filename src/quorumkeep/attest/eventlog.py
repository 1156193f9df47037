"""RTMR3 replay from a dstack-style runtime event log, and the app compose hash.

A dstack guest extends RTMR3 with one digest per runtime event (cc-eventlog's runtime
events) and keeps the events in a log; the quote only carries the final RTMR3. Replaying
the log proves which events produced it:

    digest_i = SHA-384(u32le(event_type) ‖ ":" ‖ event ‖ ":" ‖ event_payload)
    RTMR3_0  = 48 zero bytes
    RTMR3_i  = SHA-384(RTMR3_{i-1} ‖ digest_i)                (TDX Module TDG.MR.RTMR.EXTEND)

Only events with ``imr == 3`` are replayed (the log also lists boot events of RTMR0–2,
which the measurements themselves cover). Every replayed event must carry the digest that
its fields produce, so a log cannot show one payload while having extended another.

The app compose hash event (``event == "compose-hash"``, payload: the 32-byte SHA-256 of
the app's compose manifest) names the code the guest runs; it must appear at most once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from quorumkeep.attest.errors import EventLogInvalid
from quorumkeep.attest.report import MR_SIZE

RUNTIME_EVENT_TYPE = 0x08000001
"""dstack's event type for runtime events (outside the TCG-defined range)."""

COMPOSE_HASH_EVENT = "compose-hash"
APP_HASH_SIZE = 32
MAX_EVENTS = 256
MAX_EVENT_NAME = 128
MAX_PAYLOAD = 4096


@dataclass(frozen=True)
class RuntimeEvent:
    """One event of the log, as dstack's JSON names its fields."""

    imr: int
    event_type: int
    digest: bytes
    event: str
    event_payload: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "imr": self.imr,
            "event_type": self.event_type,
            "digest": self.digest.hex(),
            "event": self.event,
            "event_payload": self.event_payload.hex(),
        }


def event_digest(event_type: int, event: str, payload: bytes) -> bytes:
    """The 48-byte digest a runtime event extends RTMR3 with."""
    data = event_type.to_bytes(4, "little") + b":" + event.encode("utf-8") + b":" + payload
    return hashlib.sha384(data).digest()


def runtime_event(event: str, payload: bytes) -> RuntimeEvent:
    """A well-formed RTMR3 runtime event (what a guest appends before extending)."""
    digest = event_digest(RUNTIME_EVENT_TYPE, event, payload)
    return RuntimeEvent(3, RUNTIME_EVENT_TYPE, digest, event, payload)


def extend(rtmr: bytes, digest: bytes) -> bytes:
    return hashlib.sha384(rtmr + digest).digest()


def replay_rtmr3(events: list[RuntimeEvent]) -> bytes:
    rtmr = bytes(MR_SIZE)
    for e in events:
        if e.imr == 3:
            rtmr = extend(rtmr, e.digest)
    return rtmr


def _hex(value: Any, name: str, size: int | None, max_size: int) -> bytes:
    if not isinstance(value, str) or len(value) > 2 * max_size:
        raise EventLogInvalid(f"{name} must be hex of at most {max_size} bytes")
    try:
        data = bytes.fromhex(value)
    except ValueError as exc:
        raise EventLogInvalid(f"{name} is not hex") from exc
    if size is not None and len(data) != size:
        raise EventLogInvalid(f"{name} must be {size} bytes, got {len(data)}")
    return data


def _int(value: Any, name: str, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise EventLogInvalid(f"{name} must be an integer in [0, {maximum}]")
    return value


def parse_event_log(value: Any) -> list[RuntimeEvent]:
    """Strictly read a JSON event log (a list of dstack event objects)."""
    if not isinstance(value, list) or len(value) > MAX_EVENTS:
        raise EventLogInvalid(f"the event log must be a list of at most {MAX_EVENTS} events")
    events = []
    fields = {"imr", "event_type", "digest", "event", "event_payload"}
    for i, item in enumerate(value):
        name = f"event_log[{i}]"
        if not isinstance(item, dict) or set(item) != fields:
            raise EventLogInvalid(f"{name} must have exactly the fields {sorted(fields)}")
        event = item["event"]
        if not isinstance(event, str) or len(event) > MAX_EVENT_NAME:
            raise EventLogInvalid(f"{name}.event must be a string of at most {MAX_EVENT_NAME}")
        events.append(
            RuntimeEvent(
                imr=_int(item["imr"], f"{name}.imr", 3),
                event_type=_int(item["event_type"], f"{name}.event_type", 2**32 - 1),
                digest=_hex(item["digest"], f"{name}.digest", MR_SIZE, MR_SIZE),
                event=event,
                event_payload=_hex(
                    item["event_payload"], f"{name}.event_payload", None, MAX_PAYLOAD
                ),
            )
        )
    return events


def check_event_log(events: list[RuntimeEvent], rtmr3: bytes) -> bytes | None:
    """Replay RTMR3 and return the app compose hash (None when the log has none).

    Raises EventLogInvalid when an RTMR3 event's digest is not the one its fields give,
    the replay differs from the quote's RTMR3, or the compose hash event is repeated or
    has a payload other than 32 bytes.
    """
    app_hash: bytes | None = None
    for i, e in enumerate(events):
        if e.imr != 3:
            continue
        if e.event_type == RUNTIME_EVENT_TYPE:
            expected = event_digest(e.event_type, e.event, e.event_payload)
            if e.digest != expected:
                raise EventLogInvalid(f"event_log[{i}] ({e.event!r}): digest does not match")
        if e.event == COMPOSE_HASH_EVENT:
            if e.event_type != RUNTIME_EVENT_TYPE:
                raise EventLogInvalid(f"event_log[{i}]: the compose hash must be a runtime event")
            if app_hash is not None:
                raise EventLogInvalid("the event log has more than one compose hash event")
            if len(e.event_payload) != APP_HASH_SIZE:
                raise EventLogInvalid(f"the compose hash must be {APP_HASH_SIZE} bytes")
            app_hash = e.event_payload
    if replay_rtmr3(events) != rtmr3:
        raise EventLogInvalid("replaying the event log does not give the quote's RTMR3")
    return app_hash
