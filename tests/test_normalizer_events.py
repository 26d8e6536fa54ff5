"""Unsolicited and topic-less messages, lifecycle events, out frames, malformed and non-UTF-8
payloads: what lands in ``events`` and ``raw``."""

from __future__ import annotations

import json

import pytest

from recorder.frames import Frame, event_frame
from recorder.normalizer import NormalizeError, normalize, normalize_frame, out_topic
from recorder.schema import arrow_schema
from tests.test_normalizer import T0, frame, real, rows


def event_of(text: str | bytes, seq: int = 0) -> dict[str, object]:
    out = normalize([frame(text, seq)])
    assert set(out) == {"events", "raw"}
    (row,) = rows(out, "events")
    return row


@pytest.mark.parametrize(
    ("name", "index", "kind", "topic"),
    [
        ("system", 0, "system", "system"),  # login success
        ("system", 1, "system", "system"),  # hb
        ("sts", 0, "sts", "sts"),
        ("sts", 5, "sts", "sts"),
        ("act", 0, "act", "act"),
        ("tic", 0, "tic", "tic"),
        ("errors", 0, "error", None),
        ("other", 0, "other", "sld+DU7654321"),
        ("other", 1, "other", "ssd+DU7654321"),
        ("other", 2, "message", None),
    ],
)
def test_unsolicited_real_frames(name: str, index: int, kind: str, topic: str | None) -> None:
    text = real(name)[index]
    row = event_of(text, 7)
    assert row == {
        "recv_ts": T0 + 7000, "conn_id": 1, "seq": 7, "kind": kind, "topic": topic,
        "detail": json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False),
    }  # fmt: skip


def test_heartbeat_detail_exact() -> None:
    row = event_of(real("system")[1])
    assert row["detail"] == '{"topic":"system","hb":1777415611502}'


def test_tic_replies_four_copies_four_rows() -> None:
    texts = real("tic")[:4]
    out = normalize([frame(t, i) for i, t in enumerate(texts)])
    assert [(r["seq"], r["kind"]) for r in rows(out, "events")] == [(i, "tic") for i in range(4)]


def test_blt_ntf_and_topicless_result() -> None:
    # Constructed (no verbatim capture exists): blt/ntf in the documented args shape, and the
    # ledger unsubscribe ack.
    assert event_of('{"topic":"blt","args":{"id":"1","message":"m"}}')["kind"] == "blt"
    ntf = '{"topic":"ntf","args":{"id":"INDICATIVE_DATA_SUGGESTION","text":"t"}}'
    assert event_of(ntf)["kind"] == "ntf"
    assert event_of('{"result":"unsubscribed from ledger"}')["kind"] == "message"


def test_real_ntf_doc_sample_is_malformed_but_raw_is_kept() -> None:
    (text,) = real("ntf")
    out = normalize([frame(text, 2)])
    (event,) = rows(out, "events")
    detail = json.loads(event["detail"])
    assert (event["kind"], event["topic"], event["seq"]) == ("malformed", None, 2)
    assert detail["error"].startswith("invalid JSON: unexpected character")
    assert (detail["direction"], detail["bytes"]) == ("in", len(text.encode()))
    assert detail["excerpt"] == text[:200]
    assert rows(out, "raw") == [
        {"recv_ts": T0 + 2000, "conn_id": 1, "seq": 2, "direction": "in", "topic": None,
         "payload": text.encode()}
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"", "invalid JSON"),
        (b"[1,2]", "not a JSON object but list"),
        (b'"hb"', "not a JSON object but str"),
        (b'{"topic":5}', "topic is not a string: 5"),
        (b'{"topic":"smh+1","data":"x"}', "smh+1 frame has no `data` array"),
        (b'{"topic":"spl","args":[]}', "spl frame without an `args` object"),
    ],
)
def test_malformed_in_frames(payload: bytes, error: str) -> None:
    with pytest.raises(NormalizeError) as info:
        normalize_frame(frame(payload))
    assert str(info.value).startswith(error)
    row = event_of(payload, 3)
    assert row["kind"] == "malformed"
    assert json.loads(str(row["detail"]))["error"].startswith(error)


def test_non_utf8_byte_0x99_is_decoded_leniently() -> None:
    # Real gateways put 0x99 into text frames (IBIND #148); here inside an order description.
    payload = b'{"topic":"sor","args":[{"acct":"U1","orderId":7,"orderDesc":"Buy \x99 1"}]}'
    out = normalize([frame(payload, 0)])
    (order,) = rows(out, "orders")
    assert (order["order_id"], order["order_desc"]) == (7, "Buy \ufffd 1")
    assert rows(out, "raw")[0]["payload"] == payload  # the exact bytes, not the decoded text
    assert rows(out, "raw")[0]["topic"] == "sor"


@pytest.mark.parametrize(
    ("message", "topic"),
    [
        (b'smd+265598+{"fields":["31","84"]}', "smd+265598"),
        (b"umd+265598+{}", "umd+265598"),
        (b'smh+265598+{"period":"1d","bar":"1min"}', "smh+265598"),
        (b"umh+588547", "umh+588547"),
        (b"sbd+DU1234567+265598", "sbd+DU1234567+265598"),
        (b"sbd+DU1234567+265598+NYSE", "sbd+DU1234567+265598+NYSE"),
        (b"tic", "tic"),
        (b"sor+{}", "sor"),
        (b"utr", "utr"),
        (b'{"session":"<redacted>"}', None),
        (b"", None),
    ],
)
def test_out_frames_give_raw_rows_with_topic(message: bytes, topic: str | None) -> None:
    assert out_topic(message) == topic
    out = normalize([frame(message, 4, "out")])
    assert set(out) == {"raw"}
    assert rows(out, "raw") == [
        {"recv_ts": T0 + 4000, "conn_id": 1, "seq": 4, "direction": "out", "topic": topic,
         "payload": message}
    ]  # fmt: skip


def test_lifecycle_event_frames() -> None:
    frames = [
        event_frame(T0, 0, 0, "connect", None, {"url": "wss://127.0.0.1:5000/v1/api/ws"}),
        event_frame(T0 + 1, 2, 1, "smh_timeout", "smh+265598"),
        Frame(T0 + 2, 2, 2, "event", b'{"kind":7}'),
        Frame(T0 + 3, 2, 3, "sideways", b"tic"),
    ]
    out = normalize(frames)
    assert set(out) == {"events"}  # event frames have no raw row
    got = [(r["recv_ts"], r["conn_id"], r["seq"], r["kind"], r["topic"]) for r in
           rows(out, "events")]  # fmt: skip
    assert got == [
        (T0, 0, 0, "connect", None),
        (T0 + 1, 2, 1, "smh_timeout", "smh+265598"),
        (T0 + 2, 2, 2, "malformed", None),
        (T0 + 3, 2, 3, "malformed", None),
    ]
    details = rows(out, "events")
    assert details[0]["detail"] == '{"url":"wss://127.0.0.1:5000/v1/api/ws"}'
    assert details[1]["detail"] is None
    assert json.loads(details[3]["detail"])["error"] == "unknown direction 'sideways'"


def test_mixed_batch_keeps_input_order_and_only_nonempty_tables() -> None:
    smd, hb, sor = real("smd")[0], real("system")[1], real("sor")[2]
    frames = [frame(smd, 0), frame(hb, 1), frame(b"tic", 2, "out"), frame(sor, 3),
              frame(smd, 4), event_frame(T0, 0, 5, "disconnect")]  # fmt: skip
    out = normalize(frames)
    assert list(out) == ["market_data", "orders", "events", "raw"]
    assert [r["seq"] for r in rows(out, "raw")] == [0, 1, 2, 3, 4]
    assert [r["seq"] for r in rows(out, "market_data")] == [0, 4]
    assert [(r["seq"], r["kind"]) for r in rows(out, "events")] == [
        (1, "system"),
        (5, "disconnect"),
    ]
    for name, table in out.items():
        assert table.schema.equals(arrow_schema(name), check_metadata=True)
    assert normalize([]) == {}


def test_normalize_frame_rows_match_normalize() -> None:
    text = real("smd")[0]
    got = normalize_frame(frame(text, 1))
    assert set(got) == {"market_data", "raw"}
    assert got["raw"] == [(T0 + 1000, 1, 1, "in", "smd+265598", text.encode())]
    assert got["market_data"][0][:4] == (T0 + 1000, 1, 1777552110061, 265598)
