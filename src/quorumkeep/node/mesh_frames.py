"""The mesh's frames (docs/mesh.md, "Frames"): a 4-byte big-endian length, then a body whose
first byte is its type.

- HELLO (``0x01 "QKM" version``): the acceptor's first frame, its acceptance of the dialler.
- INCARNATION (``0x03`` and 16 bytes): the dialler's first frame, the process it is.
- MESSAGE (``0x02``, a 1-byte channel length, the UTF-8 channel, the payload): everything else.
"""

from __future__ import annotations

import asyncio

MAX_FRAME_SIZE = 8 * 1024 * 1024
"""Largest frame body accepted or sent (the 4-byte length prefix not included)."""
FRAME_HELLO = 0x01
FRAME_MESSAGE = 0x02
FRAME_INCARNATION = 0x03
PROTOCOL_VERSION = 2
"""2: the dialler's INCARNATION frame follows the acceptor's HELLO."""
HELLO_BODY = bytes([FRAME_HELLO]) + b"QKM" + bytes([PROTOCOL_VERSION])
INCARNATION_SIZE = 16
MAX_CHANNEL_SIZE = 255
_LENGTH_SIZE = 4


class MeshError(Exception):
    """Base of mesh errors; ``code`` is stable and messages carry no payload bytes."""

    code = "mesh_error"


class FrameError(MeshError, ValueError):
    """A frame (received or about to be sent) breaks the format or the size limit."""

    code = "invalid_frame"


def _check_channel(channel: str) -> bytes:
    if not isinstance(channel, str):
        raise FrameError("channel must be a str")
    encoded = channel.encode("utf-8")
    if not 1 <= len(encoded) <= MAX_CHANNEL_SIZE:
        raise FrameError(f"channel must be 1..{MAX_CHANNEL_SIZE} UTF-8 bytes")
    return encoded


def encode_message(channel: str, payload: bytes, max_frame_size: int = MAX_FRAME_SIZE) -> bytes:
    """The complete MESSAGE frame, length prefix included."""
    encoded = _check_channel(channel)
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise FrameError("payload must be bytes")
    body_size = 2 + len(encoded) + len(payload)
    if body_size > max_frame_size:
        raise FrameError(f"message of {body_size} bytes exceeds the {max_frame_size}-byte limit")
    return b"".join(
        [
            body_size.to_bytes(_LENGTH_SIZE, "big"),
            bytes([FRAME_MESSAGE, len(encoded)]),
            encoded,
            bytes(payload),
        ]
    )


def encode_hello() -> bytes:
    return len(HELLO_BODY).to_bytes(_LENGTH_SIZE, "big") + HELLO_BODY


def encode_incarnation(incarnation: bytes) -> bytes:
    """The complete INCARNATION frame (the dialler's first), length prefix included."""
    if not isinstance(incarnation, bytes) or len(incarnation) != INCARNATION_SIZE:
        raise FrameError(f"an incarnation is {INCARNATION_SIZE} bytes")
    body = bytes([FRAME_INCARNATION]) + incarnation
    return len(body).to_bytes(_LENGTH_SIZE, "big") + body


def decode_incarnation(body: bytes) -> bytes:
    """The incarnation of an INCARNATION frame body; :class:`FrameError` for anything else."""
    if len(body) != 1 + INCARNATION_SIZE or body[0] != FRAME_INCARNATION:
        raise FrameError("expected INCARNATION")
    return bytes(body[1:])


def decode_message(body: bytes) -> tuple[str, bytes]:
    """(channel, payload) of a MESSAGE frame body; :class:`FrameError` for anything else."""
    if len(body) < 3 or body[0] != FRAME_MESSAGE:
        raise FrameError("not a MESSAGE frame")
    channel_size = body[1]
    if channel_size == 0 or len(body) < 2 + channel_size:
        raise FrameError("bad channel length")
    try:
        channel = body[2 : 2 + channel_size].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError("channel is not UTF-8") from None
    return channel, body[2 + channel_size :]


async def read_frame(reader: asyncio.StreamReader, max_frame_size: int = MAX_FRAME_SIZE) -> bytes:
    """One frame body. EOF raises ``asyncio.IncompleteReadError``; a bad length FrameError."""
    size = int.from_bytes(await reader.readexactly(_LENGTH_SIZE), "big")
    if not 1 <= size <= max_frame_size:
        raise FrameError(f"frame length {size} outside 1..{max_frame_size}")
    return await reader.readexactly(size)
