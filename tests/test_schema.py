"""schemas/ is the one source of truth: it parses, follows the naming rules, and the normalizer's
rows line up with it column for column."""

from __future__ import annotations

import pyarrow as pa
import pytest

from recorder import schema
from recorder.schema import SCHEMA_VERSION, TABLES, Column, arrow_schema, columns

UTC_NS = pa.timestamp("ns", tz="UTC")
UTC_MS = pa.timestamp("ms", tz="UTC")


def test_tables_in_contract_order() -> None:
    assert TABLES == ("market_data", "bars", "depth", "orders", "trades", "pnl", "events", "raw")
    assert SCHEMA_VERSION == int((schema.SCHEMAS_DIR / "VERSION").read_text())
    assert sorted(p.stem for p in schema.SCHEMAS_DIR.glob("*.toml")) == sorted(TABLES)


@pytest.mark.parametrize("table", TABLES)
def test_recv_ts_first_and_not_null(table: str) -> None:
    first = columns(table)[0]
    assert (first.name, first.type, first.nullable) == ("recv_ts", UTC_NS, False)
    for col in columns(table):
        assert col.name == col.name.lower() and col.name.isidentifier()
        assert col.description
        if pa.types.is_timestamp(col.type) and col.name != "recv_ts":
            assert col.type == UTC_MS, col.name


@pytest.mark.parametrize("table", ["market_data", "bars", "orders", "trades", "pnl"])
def test_data_tables_carry_seq(table: str) -> None:
    assert columns(table)[1] == Column(
        "seq", pa.int64(), False, columns(table)[1].description, ()
    )


def test_market_data_columns_and_field_ids() -> None:
    names = [c.name for c in columns("market_data")]
    assert names == [
        "recv_ts", "seq", "updated", "conid", "conid_ex", "server_id", "symbol", "last",
        "last_is_close", "halted", "bid", "ask", "bid_size", "ask_size", "last_size", "volume",
        "high", "low", "open", "close", "prior_close", "change", "change_pct", "mark",
        "md_availability", "extra", "cleared",
    ]  # fmt: skip
    ids = {c.name: c.field_id for c in columns("market_data")}
    assert ids["last"] == "31" and ids["bid_size"] == "88" and ids["ask_size"] == "85"
    assert ids["mark"] == "7635" and ids["md_availability"] == "6509" and ids["volume"] == "7762"
    volume = next(c for c in columns("market_data") if c.name == "volume")
    assert volume.field_ids == ("7762", "87_raw", "87")  # by preference
    s = arrow_schema("market_data")
    assert s.field("volume").metadata[b"ibkr_field"] == b"7762, 87_raw, 87"
    assert s.field("bid").metadata[b"ibkr_field"] == b"84"
    assert s.field("extra").type == pa.map_(pa.string(), pa.string())
    assert s.field("cleared").type == pa.list_(pa.string())
    assert s.field("updated").type == UTC_MS
    assert s.field("last_is_close").type == pa.bool_()


def test_raw_and_events_exact() -> None:
    raw = arrow_schema("raw")
    assert [(f.name, f.type, f.nullable) for f in raw] == [
        ("recv_ts", UTC_NS, False),
        ("conn_id", pa.int32(), False),
        ("seq", pa.int64(), False),
        ("direction", pa.string(), False),
        ("topic", pa.string(), True),
        ("payload", pa.binary(), False),
    ]
    events = arrow_schema("events")
    assert [(f.name, f.type, f.nullable) for f in events] == [
        ("recv_ts", UTC_NS, False),
        ("conn_id", pa.int32(), False),
        ("seq", pa.int64(), False),
        ("kind", pa.string(), False),
        ("topic", pa.string(), True),
        ("detail", pa.string(), True),
    ]
    assert arrow_schema("depth").names[:2] == ["recv_ts", "frame_seq"]


def test_schema_metadata_and_cache() -> None:
    s = arrow_schema("trades")
    assert s is arrow_schema("trades")
    assert s.metadata == {b"schema_version": str(SCHEMA_VERSION).encode(), b"table": b"trades"}
    assert s.field("commission").metadata == {
        b"description": b"Commission; null in the first copy of an execution.",
        b"ibkr_field": b"commission",
    }


def test_unknown_table_raises() -> None:
    with pytest.raises(schema.SchemaError, match="unknown table 'quotes'"):
        columns("quotes")


def test_markdown_reference_lists_every_column() -> None:
    md = schema.markdown_reference()
    assert md.startswith(f"Schema version {SCHEMA_VERSION}.")
    for table in TABLES:
        assert f"### `{table}`" in md
        for col in columns(table):
            assert f"| `{col.name}` | {col.type_name} |" in md
    assert "| `last` | float64 | yes | `31` | Last price, without its `C`/`H` prefix. |" in md
