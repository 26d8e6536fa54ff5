"""The tables' schemas, read from ``schemas/`` (the one source of truth).

``schemas/<table>.toml`` declares a table's columns in order: name, Arrow type, nullability, a
one-line description and the IBKR field id (or key) it comes from, where there is one (a list
of them, by preference, where several feed it).
``schemas/VERSION`` holds the schema version, an integer raised whenever a column is added,
removed, renamed or retyped. The normalizer, the writer, the views and the README's table
reference all read the schemas through this module.

Rules:
- Column names are snake_case; ``recv_ts`` is ``timestamp[ns, tz=UTC]`` and not null on every
  table; gateway times are ``timestamp[ms, tz=UTC]``.
- Every Arrow field carries its description (and field id) as field metadata, and every schema
  carries ``schema_version`` and ``table`` as schema metadata, so a Parquet file explains itself.
- Only the type names in :data:`_TYPES` are allowed; an unknown one is a bug in ``schemas/``
  and raises :class:`SchemaError` when the table is first read.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pyarrow as pa

# recorder/schemas links to the repo's schemas/, so a wheel carries them as package data
SCHEMAS_DIR: Final = Path(__file__).parent / "schemas"

TABLES: Final[tuple[str, ...]] = (
    "market_data",
    "bars",
    "depth",
    "orders",
    "trades",
    "pnl",
    "events",
    "raw",
)

_TYPES: Final[dict[str, pa.DataType]] = {
    "timestamp[ns, tz=UTC]": pa.timestamp("ns", tz="UTC"),
    "timestamp[ms, tz=UTC]": pa.timestamp("ms", tz="UTC"),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "binary": pa.binary(),
    "map<string, string>": pa.map_(pa.string(), pa.string()),
    "list<string>": pa.list_(pa.string()),
}


class SchemaError(ValueError):
    """A file in ``schemas/`` is missing or does not follow the format above."""


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool
    description: str
    field_ids: tuple[str, ...] = ()  # the IBKR field ids (or keys) it is read from, by preference

    @property
    def field_id(self) -> str | None:
        """The first (preferred) of :attr:`field_ids`, or None."""
        return self.field_ids[0] if self.field_ids else None

    @property
    def type_name(self) -> str:
        """The type as spelled in ``schemas/`` (e.g. ``timestamp[ms, tz=UTC]``)."""
        for spelling, arrow_type in _TYPES.items():
            if arrow_type == self.type:
                return spelling
        return str(self.type)  # pragma: no cover - every type comes from _TYPES


def _read_version(directory: Path) -> int:
    text = (directory / "VERSION").read_text().strip()
    if not text.isdigit():
        raise SchemaError(f"{directory / 'VERSION'}: expected an integer, got {text!r}")
    return int(text)


SCHEMA_VERSION: Final[int] = _read_version(SCHEMAS_DIR)


@functools.cache
def _table_doc(table: str) -> tuple[str, tuple[Column, ...]]:
    if table not in TABLES:
        raise SchemaError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
    path = SCHEMAS_DIR / f"{table}.toml"
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SchemaError(f"{path}: {exc}") from exc
    if doc.get("table") != table:
        raise SchemaError(f"{path}: `table` must be {table!r}")
    cols: list[Column] = []
    for i, entry in enumerate(doc.get("columns", [])):
        try:
            name, type_name, description = entry["name"], entry["type"], entry["description"]
        except KeyError as exc:
            raise SchemaError(f"{path}: column {i} lacks {exc}") from exc
        if type_name not in _TYPES:
            raise SchemaError(f"{path}: column {name!r} has unknown type {type_name!r}")
        if not name.isidentifier() or name != name.lower():
            raise SchemaError(f"{path}: column name {name!r} is not snake_case")
        field_id = entry.get("field_id")  # one id, or a list of them by preference
        ids = [] if field_id is None else field_id if isinstance(field_id, list) else [field_id]
        cols.append(
            Column(
                name=name,
                type=_TYPES[type_name],
                nullable=bool(entry.get("nullable", True)),
                description=description,
                field_ids=tuple(str(f) for f in ids),
            )
        )
    names = [c.name for c in cols]
    if len(set(names)) != len(names):
        raise SchemaError(f"{path}: duplicate column names")
    return str(doc.get("description", "")), tuple(cols)


def columns(table: str) -> tuple[Column, ...]:
    """The columns of ``table``, in order."""
    return _table_doc(table)[1]


def description(table: str) -> str:
    """What one row of ``table`` is."""
    return _table_doc(table)[0]


@functools.cache
def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of ``table`` (cached; the same object on every call)."""
    fields = []
    for col in columns(table):
        meta = {"description": col.description}
        if col.field_ids:
            meta["ibkr_field"] = ", ".join(col.field_ids)
        fields.append(pa.field(col.name, col.type, nullable=col.nullable, metadata=meta))
    return pa.schema(fields, metadata={"schema_version": str(SCHEMA_VERSION), "table": table})


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_reference() -> str:
    """The README's table reference, generated from ``schemas/``."""
    out = [f"Schema version {SCHEMA_VERSION}. Generated from `schemas/`; do not edit by hand.", ""]
    for table in TABLES:
        out += [f"### `{table}`", "", description(table), ""]
        out += ["| column | type | null | IBKR | description |", "|---|---|---|---|---|"]
        for col in columns(table):
            ibkr = ", ".join(f"`{_cell(f)}`" for f in col.field_ids)
            null = "yes" if col.nullable else "no"
            out.append(
                f"| `{col.name}` | {col.type_name} | {null} | {ibkr} | {_cell(col.description)} |"
            )
        out.append("")
    return "\n".join(out)
