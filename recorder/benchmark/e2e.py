"""The end-to-end benchmark: the recorder against a bare receive loop, fed by the simulator.

Each run starts a fresh simulator process (TLS on 127.0.0.1) and one receiver process (the real
recorder, the recorder with a storage that drops every frame, or the bare ``websockets`` loop of
:mod:`recorder.benchmark.children`), waits until
it has subscribed, turns the simulator's load pump on at ``rate`` frames/s (far above what
either can take means "full speed": the pump then waits on TCP, so the receiver sets the
pace; with ``grid``, in one batch every ``grid`` seconds, as a real gateway's market-data
snapshots arrive), lets it settle for ``warmup`` seconds and measures for ``window`` seconds: frames
received (from the receiver's own clock and counter) and CPU seconds (psutil). Then the pump
stops, the parent waits until the receiver has every frame the simulator sent, and stops the
receiver cleanly; for the recorder, the published ``raw`` table is held against the
simulator's count (frames lost) and against the pump's cyclic order (frames out of order).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.benchmark.processes import Child, Meter, Sample, folder_bytes
from recorder.sim.load import frame_pool
from recorder.sim.options import DEFAULT_ACCOUNT

FULL_SPEED = 0.0  # run_receiver's rate for "as fast as TCP takes it"


@dataclass
class ReceiverRun:
    kind: str
    rate: float
    window_s: float
    frames_per_s: float
    cpu_pct: float  # of one core, during the window
    frames_sent: int  # by the simulator, the whole run
    frames_received: int  # by the receiver, the whole run
    samples: list[Sample] = field(default_factory=list)
    raw_in: int | None = None  # recorder: ``in`` rows published in raw
    out_of_order: int | None = None
    parquet_bytes: int | None = None
    done: dict[str, Any] = field(default_factory=dict)

    @property
    def frames_lost(self) -> int:
        got = self.raw_in if self.raw_in is not None else self.frames_received
        return self.frames_sent - got

    @property
    def queue_max(self) -> int:
        return max((s.queue for s in self.samples), default=0)


def _rate_between(samples: list[dict[str, Any]], start: float, end: float) -> float:
    inside = [s for s in samples if start <= s["t"] <= end]
    if len(inside) < 2:
        return 0.0
    first, last = inside[0], inside[-1]
    return (last["frames_in"] - first["frames_in"]) / (last["t"] - first["t"])


def run_receiver(kind: str, rate: float, warmup: float, window: float, workdir: Path,
                 log: IO[str], rotate_seconds: float = 300.0, grid: float = 0.0) -> ReceiverRun:
    sim = Child("sim", log=log)
    try:
        info = sim.wait_for(lambda line: "url" in line, 60)
        out = workdir / f"{kind}-{int(rate) or 'full'}{'-grid' if grid else ''}"
        shutil.rmtree(out, ignore_errors=True)
        args = ["--url", info["url"], "--cafile", info["cafile"]]
        if kind in ("record", "reader"):
            args += ["--out", str(out), "--rotate-seconds", f"{rotate_seconds:g}"]
        else:
            args += ["--session-id", info["session_id"]]
        receiver = Child(kind, *args, log=log)
        child_samples: list[dict[str, Any]] = []
        try:
            receiver.wait_for(lambda line: bool(line.get("ready")), 60)
            time.sleep(0.5)  # the subscription snapshots
            with Meter(receiver) as meter:
                pace = f"{rate:g} grid {grid:g}" if grid else f"{rate:g}" if rate else "full"
                sim.ask(f"rate {pace}", "rate")
                time.sleep(warmup)
                first = meter.sample()
                time.sleep(window)
                last = meter.sample()
                sim.ask("rate 0", "rate")
                sent = _drain(sim, receiver)
            while not receiver.lines.empty():
                line = receiver.lines.get_nowait()
                if line and "t" in line:
                    child_samples.append(line)
            receiver.send("stop")
            done = receiver.wait_for(lambda line: bool(line.get("done")), 120)
            # what the simulator sent in all (a stop sends unsubscribes, which may be answered)
            sent = int(sim.ask("stats", "frames_sent")["frames_sent"])
        finally:
            receiver.close()
    finally:
        sim.close()
    run = ReceiverRun(
        kind=kind, rate=rate, window_s=last.t - first.t,
        frames_per_s=_rate_between(child_samples, first.t, last.t),
        cpu_pct=100 * (last.cpu_s - first.cpu_s) / (last.t - first.t),
        frames_sent=sent, frames_received=int(done.get("frames_in", 0)),
        samples=meter.samples, done=done,
    )
    if kind == "record":
        run.raw_in, run.out_of_order = check_raw(out)
        run.parquet_bytes = folder_bytes(out)
        shutil.rmtree(out, ignore_errors=True)
    return run


def _drain(sim: Child, receiver: Child, timeout: float = 60.0) -> int:
    """Wait until the receiver has counted every frame the simulator sent; the count."""
    deadline = time.monotonic() + timeout
    sent = -1
    while time.monotonic() < deadline:
        sent = int(sim.ask("stats", "frames_sent")["frames_sent"])
        if receiver.frames_in() >= sent:
            return sent
        time.sleep(0.25)
    return sent


def check_raw(out: Path) -> tuple[int, int]:
    """``(in rows, pump frames out of order)`` of a recording's ``raw`` table.

    The pump sends its 200-frame pool cyclically, so in ``seq`` order every pump frame must be
    the pool's next one; each place where that breaks counts once. Files are read one at a time,
    in journal-segment order, in batches, so a big recording needs little memory."""
    pool = [payload for payload, _ in frame_pool(1, DEFAULT_ACCOUNT)]
    where = {payload: i for i, payload in enumerate(pool)}
    files = sorted(out.glob("raw/date=*/*.parquet"),
                   key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    count = breaks = 0
    expected: int | None = None
    last_seq = -1
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(columns=["seq", "direction", "payload"],
                                                        batch_size=65_536):
            batch = batch.filter(pc.equal(batch.column("direction"), "in"))
            count += batch.num_rows
            seqs = batch.column("seq").to_pylist()
            for seq, payload in zip(seqs, batch.column("payload").to_pylist(), strict=True):
                if seq <= last_seq:
                    breaks += 1
                last_seq = seq
                index = where.get(payload)
                if index is None:
                    continue  # login burst, snapshots, tic replies: not the pump's
                if expected is not None and pool[expected] != payload:
                    breaks += 1
                expected = (index + 1) % len(pool)
    return count, breaks
