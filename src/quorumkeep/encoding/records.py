"""Declarative JSON records: one declaration gives a record's JSON and its strict parser.

A record is a frozen dataclass whose fields, in JSON order, each name their kind::

    @dataclass(frozen=True)
    class Domain(ContractRecord):
        domain_id: int = field(metadata=INT)
        scheme: str = field(metadata=SCHEME)

:meth:`JsonRecord.to_json` writes every field in declared order through its kind, and
:meth:`JsonRecord.from_json` checks the object (exact keys; optional ones take a default)
and reads every field through its kind. Adding a field is one line; the encoder and the
parser cannot disagree about it. The contract's state records and the backup protocol's
messages (which also derive their signed statements from the same declaration) are built
on this codec.

The codec raises nothing of its own: a family's base record overrides
:meth:`JsonRecord.check_object` (and, if it names fields otherwise than ``<what>.<field>``,
:meth:`JsonRecord.field_path`), and its kinds take readers that raise the family's typed
error (the contract's ``InvalidArguments``, the backup protocol's ``malformed_request``), so
wording and error codes stay the family's. Bytes are written as lowercase hex unless a kind
says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, Field, fields
from typing import Any, ClassVar, Self

Reader = Callable[[Any, str], Any]
"""Checks one JSON value and returns it decoded, or raises; the string names the field."""
Writer = Callable[[Any], Any]

KIND_KEY = "quorumkeep.encoding.records kind"
"""The metadata key of a record field's :class:`Kind`."""


def write_value(value: Any) -> Any:
    """Bytes as lowercase hex; every other JSON value as it is."""
    return value.hex() if isinstance(value, bytes) else value


class Kind:
    """How one field is written into JSON and read back from it: by default one member
    named after the field, written by ``write`` and read by ``read``.

    ``optional`` fields may be absent from the JSON (the field's default is then used) but
    are always written. Subclasses may spread a field over several members (``json_names``)
    or ask to be read before the others (``parsed_first``)."""

    parsed_first = False

    def __init__(
        self,
        read: Reader,
        write: Writer = write_value,
        *,
        optional: bool = False,
        key: str | None = None,
    ) -> None:
        self.read = read
        self.write = write
        self.optional = optional
        self.key = key
        """The JSON member's name where it differs from the attribute's."""

    def metadata(self) -> Mapping[str, Kind]:
        """The ``metadata=`` of a field of this kind."""
        return {KIND_KEY: self}

    def json_names(self, name: str) -> tuple[str, ...]:
        return (self.key or name,)

    def to_json(self, name: str, value: Any) -> list[tuple[str, Any]]:
        return [(self.key or name, self.write(value))]

    def from_json(self, obj: Mapping[str, Any], name: str, path: str, what: str) -> Any:
        """The field from the checked object; ``path`` names it in errors, ``what`` names
        the record."""
        return self.read(obj[self.key or name], path)


def kind(
    read: Reader, write: Writer = write_value, *, optional: bool = False, key: str | None = None
) -> Mapping[str, Kind]:
    """The ``metadata=`` of a record field: ``name: T = field(metadata=kind(reader))``."""
    return Kind(read, write, optional=optional, key=key).metadata()


def nullable(read: Reader, write: Writer = write_value) -> tuple[Reader, Writer]:
    """A reader and writer that also take JSON ``null`` for ``None``."""
    return (
        lambda value, path: None if value is None else read(value, path),
        lambda value: None if value is None else write(value),
    )


class Flattened(Kind):
    """A nested record whose members sit in the enclosing object itself (no sub-object)."""

    def __init__(self, record: type[JsonRecord]) -> None:
        super().__init__(record.from_json, lambda value: value.to_json())
        self.record = record

    def json_names(self, name: str) -> tuple[str, ...]:
        return tuple(n for field_name, k in layout(self.record) for n in k.json_names(field_name))

    def to_json(self, name: str, value: Any) -> list[tuple[str, Any]]:
        return list(value.to_json().items())

    def from_json(self, obj: Mapping[str, Any], name: str, path: str, what: str) -> Any:
        return self.record.from_json({n: obj[n] for n in self.json_names(name)}, what)


def record_kind(record: type[JsonRecord], *, optional: bool = False) -> Mapping[str, Kind]:
    """A field holding a nested record of the same family."""
    return Kind(record.from_json, lambda value: value.to_json(), optional=optional).metadata()


_LAYOUTS: dict[type[Any], tuple[tuple[str, Kind], ...]] = {}


def layout(record: type[Any]) -> tuple[tuple[str, Kind], ...]:
    """The record's field names and kinds in declared (JSON) order (computed once a class)."""
    found = _LAYOUTS.get(record)
    if found is None:
        found = tuple(
            (f.name, f.metadata[KIND_KEY]) for f in fields(record) if KIND_KEY in f.metadata
        )
        _LAYOUTS[record] = found
    return found


def _default(record: type[Any], name: str) -> Any:
    f = record.__dataclass_fields__[name]
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise TypeError(f"optional field {name} has no default")


class JsonRecord:
    """Base of a family's records; the family's base overrides :meth:`check_object` once."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    @classmethod
    def check_object(
        cls, value: Any, what: str, required: Sequence[str], optional: Sequence[str]
    ) -> Mapping[str, Any]:
        """``value`` as an object holding every required key, and only those and the
        optional ones; otherwise the family's error."""
        raise NotImplementedError

    @classmethod
    def field_path(cls, what: str, name: str) -> str:
        """How errors name field ``name`` of the record ``what``."""
        return f"{what}.{name}"

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {}
        for name, k in layout(type(self)):
            document.update(k.to_json(name, getattr(self, name)))
        return document

    @classmethod
    def from_json(cls, value: Any, what: str, *, defaults: Mapping[str, Any] | None = None) -> Self:
        """Parse strictly; a field named in ``defaults`` may be absent and then reads as
        its value there (an ``optional`` kind's field reads as the field's default)."""
        defaults = defaults or {}
        declared = layout(cls)
        required: list[str] = []
        optional: list[str] = []
        for name, k in declared:
            (optional if k.optional or name in defaults else required).extend(k.json_names(name))
        obj = cls.check_object(value, what, required, optional)
        values: dict[str, Any] = {}
        for name, k in sorted(declared, key=lambda item: not item[1].parsed_first):
            member = k.json_names(name)[0]
            if member in obj:
                values[name] = k.from_json(obj, name, cls.field_path(what, member), what)
            else:
                values[name] = defaults[name] if name in defaults else _default(cls, name)
        return cls(**values)
