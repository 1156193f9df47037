"""The stable code and the one readable line of an error, whatever part raised it.

The services' own errors, the protocols' errors and the ledger client's errors all carry a
``code`` and a ``message``; anything else is named by its type and its ``str``. Log lines and
status documents use these two, never a traceback (which could show a secret's value).
"""

from __future__ import annotations


def error_code(exc: BaseException) -> str:
    """``exc.code`` (a stable, documented code), else the exception's type name."""
    return str(getattr(exc, "code", type(exc).__name__))


def error_message(exc: BaseException) -> str:
    """``exc.message`` (one line for the operator), else ``str(exc)``."""
    return str(getattr(exc, "message", exc))
