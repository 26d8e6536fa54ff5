"""The offline benchmark: the storage pipeline against a bare ``orjson.loads``, side by side.

Both run on the same frames (:mod:`recorder.benchmark.frames`), interleaved rep by rep in one
process, and each keeps its best time, so a noisy neighbour hurts both alike. The pipeline is
the recorder's own :class:`~recorder.storage.Pipeline` exactly as the writer task drives it:
``write`` in batches (redact, journal, normalize, buffer), ``flush`` now and then (row groups,
journal fsync) and ``close`` (publish every file: close, fsync, rename), into a fresh folder.
Beside them, the floor under any batch normalizer: Arrow's JSON reader against ``orjson.loads``
on the smd and sbd frames alone, the ones the normalizer's fast paths parse that way.
"""

from __future__ import annotations

import gc
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from recorder.benchmark.frames import T0_NS, as_frames, mixed_payloads
from recorder.frames import Frame
from recorder.normalize.arrow_json import read_parts
from recorder.normalizer import normalize
from recorder.storage import Pipeline

BATCH = 5_000  # frames per Pipeline.write, as the writer task takes them off a busy queue
FLUSH_EVERY = 10  # batches between flushes (the writer task flushes every flush_seconds / 2)
TIMEZONE = "America/New_York"


@dataclass(frozen=True)
class OfflineResult:
    frames: int
    payload_bytes: int
    parse_ns: float  # best total, orjson.loads of every payload
    normalize_ns: float  # best total, normalize() alone
    pipeline_ns: float  # best total, the whole Pipeline
    parquet_bytes: int  # every published file, all tables and raw
    journal_bytes: int  # journal records written (deleted once published)
    rows: dict[str, int]
    reps: int
    batch_frames: int = 0  # frames of the two batch-parsed topics (smd, sbd)
    batch_loads_ns: float = 0.0  # best total, orjson.loads of those frames
    batch_read_ns: float = 0.0  # best total, Arrow's JSON reader on them, as the fast paths read


def bare_parse(payloads: Sequence[bytes]) -> None:
    loads, error = orjson.loads, orjson.JSONDecodeError
    for payload in payloads:
        try:
            loads(payload)
        except error:
            pass


def batch_topics(payloads: Sequence[bytes]) -> list[list[bytes]]:
    """The smd and the sbd payloads, apart: what the normalizer's fast paths parse in a batch."""
    return [[p for p in payloads if b'"topic":"' + prefix in p] for prefix in (b"smd+", b"sbd+")]


def arrow_read(groups: Sequence[Sequence[bytes]]) -> None:
    """Arrow's JSON reader on each group, with the fast paths' options, 5,000 frames a read
    (the fast paths read each topic's share of a 5,000-frame batch; the ratio came out the same
    both ways): the columnar parse any batch normalizer built on the named libraries starts
    from."""
    for payloads in groups:
        for i in range(0, len(payloads), BATCH):
            read_parts(payloads[i : i + BATCH])


def run_pipeline(frames: Sequence[Frame], root: Path) -> Pipeline:
    pipe = Pipeline(root, timezone=TIMEZONE, clock=lambda: T0_NS)
    for i in range(0, len(frames), BATCH):
        pipe.write(frames[i : i + BATCH])
        if (i // BATCH) % FLUSH_EVERY == FLUSH_EVERY - 1:
            pipe.flush()
    pipe.close()
    return pipe


def _timed(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - start


def run_offline(count: int, reps: int, workdir: Path) -> OfflineResult:
    payloads = mixed_payloads(count)
    frames = as_frames(payloads)
    groups = batch_topics(payloads)
    batch = [p for group in groups for p in group]
    best = {"parse": float("inf"), "normalize": float("inf"), "pipeline": float("inf"),
            "batch_loads": float("inf"), "batch_read": float("inf")}
    parquet_bytes = journal_bytes = 0
    rows: dict[str, int] = {}
    for rep in range(reps):
        root = workdir / f"offline-{rep}"
        shutil.rmtree(root, ignore_errors=True)
        best["parse"] = min(best["parse"], _timed(lambda: bare_parse(payloads)))
        best["batch_loads"] = min(best["batch_loads"], _timed(lambda: bare_parse(batch)))
        best["batch_read"] = min(best["batch_read"], _timed(lambda: arrow_read(groups)))
        best["normalize"] = min(best["normalize"], _timed(
            lambda: [normalize(frames[i : i + BATCH]) for i in range(0, len(frames), BATCH)]))
        pipes: list[Pipeline] = []

        def pipeline(root: Path = root, pipes: list[Pipeline] = pipes) -> None:
            pipes.append(run_pipeline(frames, root))

        best["pipeline"] = min(best["pipeline"], _timed(pipeline))
        parquet_bytes = sum(p.stat().st_size for p in root.glob("*/date=*/*.parquet"))
        journal_bytes = pipes[0].bytes_written - parquet_bytes
        rows = dict(pipes[0].rows)
        shutil.rmtree(root, ignore_errors=True)
    return OfflineResult(len(frames), sum(map(len, payloads)), best["parse"], best["normalize"],
                         best["pipeline"], parquet_bytes, journal_bytes, rows, reps,
                         len(batch), best["batch_loads"], best["batch_read"])
