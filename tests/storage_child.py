"""A recording stand-in for the kill -9 tests: feeds real frames into ``Storage`` and, before
each put, appends ``seq recv_ts_ns`` to a side file, and after the puts return
``accepted LAST_SEQ TIME``, so the test knows what was received when.

Usage: python storage_child.py DIR SIDE_FILE FIRST_SEQ FLUSH_SECONDS ROTATE_SECONDS
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from storage_frames import real_payloads  # noqa: E402

from recorder.frames import Frame  # noqa: E402
from recorder.redact import Redactor  # noqa: E402
from recorder.storage import Storage, StorageOptions  # noqa: E402


async def main(root: Path, side: Path, seq: int, flush: float, rotate: float) -> None:
    payloads = real_payloads()
    storage = Storage(StorageOptions(root, "America/New_York", rotate_seconds=rotate,
                                     flush_seconds=flush, queue_max=1_000), Redactor())
    await storage.recover()
    fd = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.write(fd, b"ready\n")
    async with asyncio.TaskGroup() as tg:
        tg.create_task(storage.run())
        while True:  # until killed
            batch = []
            for _ in range(20):
                seq += 1
                batch.append(Frame(time.time_ns(), 1, seq, "in",
                                   payloads[seq % len(payloads)]))
            os.write(fd, "".join(f"{f.seq} {f.recv_ts_ns}\n" for f in batch).encode())
            for frame in batch:
                await storage.put(frame)
            # with backpressure a frame is only received once put returns (the socket
            # stalls until then), so the time that counts is this one
            os.write(fd, f"accepted {seq} {time.time_ns()}\n".encode())
            await asyncio.sleep(0.002)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]),
                     float(sys.argv[4]), float(sys.argv[5])))
