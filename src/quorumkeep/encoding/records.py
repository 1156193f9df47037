"""Declarative JSON records: one declaration gives a record's JSON and its strict parser.

A record is a frozen dataclass whose fields, in JSON order, each name their kind::

    @dataclass(frozen=True)
    class Domain(JsonRecord):
        domain_id: int = field(metadata=INT)
        scheme: str = field(metadata=SCHEME)

:meth:`JsonRecord.to_json` writes every field in declared order through its kind, and
:meth:`JsonRecord.from_json` checks the object (exact keys, or optional ones with their
default) and reads every field through its kind, naming it ``<what>.<field>`` in errors.
Adding a field is one line; the encoder and the parser cannot disagree about it.

The codec raises nothing of its own: each family passes readers that raise its own typed
error (the contract's ``InvalidArguments``, the backup protocol's ``malformed_request``,
the mesh's ``MessageError``) and its own object check, so wording and error codes stay the
family's. Bytes are written as lowercase hex unless a kind says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, fields
from typing import Any, ClassVar, Self

Reader = Callable[[Any, str], Any]
"""Checks one JSON value and returns it decoded, or raises; the string names the field."""
Writer = Callable[[Any], Any]

KIND_KEY = "quorumkeep.encoding.records kind"
"""The metadata key of a record field's :class:`Kind`."""


def write_value(value: Any) -> Any:
    """Bytes as lowercase hex; every other JSON value as it is."""
    return value.hex() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class Kind:
    """How one field is written into JSON and read back from it.

    ``optional`` fields may be absent from the JSON (the field's default is then used) but
    are always written."""

    read: Reader
    write: Writer = write_value
    optional: bool = False

    def metadata(self) -> Mapping[str, Kind]:
        return {KIND_KEY: self}


def kind(
    read: Reader, write: Writer = write_value, *, optional: bool = False
) -> Mapping[str, Kind]:
    """The ``metadata=`` of a record field: ``name: T = field(metadata=kind(reader))``."""
    return Kind(read, write, optional).metadata()


def record_kind(record: type[JsonRecord], *, optional: bool = False) -> Mapping[str, Kind]:
    """A field holding a nested record of the same family."""
    return Kind(record.from_json, lambda value: value.to_json(), optional).metadata()


def layout(record: type[Any]) -> tuple[tuple[Field[Any], Kind], ...]:
    """The record's fields and kinds in declared (JSON) order."""
    return tuple((f, f.metadata[KIND_KEY]) for f in fields(record) if KIND_KEY in f.metadata)


def _default(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise TypeError(f"optional field {f.name} has no default")


class JsonRecord:
    """Base of a family's records; the family's base overrides :meth:`check_object` once."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    @classmethod
    def check_object(
        cls, value: Any, name: str, required: Sequence[str], optional: Sequence[str]
    ) -> Mapping[str, Any]:
        """``value`` as an object holding every required key, and only those and the
        optional ones; otherwise the family's error."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        return {f.name: k.write(getattr(self, f.name)) for f, k in layout(type(self))}

    @classmethod
    def from_json(cls, value: Any, name: str, *, defaults: Mapping[str, Any] | None = None) -> Self:
        """Parse strictly; a field named in ``defaults`` may be absent and then reads as
        its value there (a kind's ``optional`` field reads as the field's default)."""
        defaults = defaults or {}
        declared = layout(cls)

        def optional(f: Field[Any], k: Kind) -> bool:
            return k.optional or f.name in defaults

        obj = cls.check_object(
            value,
            name,
            [f.name for f, k in declared if not optional(f, k)],
            [f.name for f, k in declared if optional(f, k)],
        )
        values = {
            f.name: k.read(obj[f.name], f"{name}.{f.name}")
            if f.name in obj
            else defaults.get(f.name, _default(f) if k.optional else None)
            for f, k in declared
        }
        return cls(**values)
