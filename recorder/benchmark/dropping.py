"""The benchmark's reader-only run: a storage that keeps nothing.

Its own module so that :mod:`recorder.benchmark.children` imports it (and storage, and Arrow
with it) only in the recorder's child, as it does the runner: the simulator's child stays lean.
"""

from __future__ import annotations

from recorder.frames import Frame
from recorder.storage import Storage


class DroppingStorage(Storage):
    """Storage that takes every frame at once and keeps none: with it the recorder is its
    socket reader alone (multiplexer, classification, the put), as if storage cost nothing.
    Only for the benchmark's reader-only run; its folder stays empty."""

    dropped = 0

    async def put(self, frame: Frame) -> None:
        self.dropped += 1

    def put_nowait(self, frame: Frame) -> None:
        self.dropped += 1
