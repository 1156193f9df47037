"""The one exception the emergency-recovery tools raise, with a stable code."""

from __future__ import annotations


class ErsError(Exception):
    """A refused recovery step. ``code`` is stable; the message is one line, never secret.

    Codes: ``unreadable`` (a file cannot be read or parsed), ``bundle_invalid`` (the bundle
    does not verify), ``not_enough_parts`` (fewer than t usable parts), ``wrong_epoch`` /
    ``wrong_domain`` (not the bundle asked for), ``wrong_key`` (the private key is not the
    bundle's recovery key), ``decryption_failed``, ``group_key_mismatch``,
    ``passphrase_unavailable``, ``exists`` (refusing to overwrite).
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = " ".join(message.split())
        super().__init__(f"{code}: {self.message}")
