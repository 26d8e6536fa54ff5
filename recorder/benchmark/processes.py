"""The parent's side of the end-to-end benchmark: child processes, their samples, psutil.

A :class:`Child` is one ``python -m recorder.benchmark.children`` process; a thread reads its
JSON lines into a queue, so the parent can wait for a line matching a predicate with a
deadline. :class:`Meter` watches a child with psutil: CPU seconds (the process and its
children) and RSS, sampled together with the child's own ``frames_in``.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
import psutil

Line = dict[str, Any]


class ChildFailed(RuntimeError):
    pass


class Child:
    """A child process speaking JSON lines; ``stderr`` goes to ``log``."""

    def __init__(self, role: str, *args: str, log: IO[str] | None = None) -> None:
        self.role = role
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "recorder.benchmark.children", role, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log or subprocess.DEVNULL,
            text=True, bufsize=1,
        )
        self.lines: queue.Queue[Line | None] = queue.Queue()
        self.last_sample: Line = {}
        self._reader = threading.Thread(target=self._read, name=f"{role}-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for text in self.proc.stdout:
            try:
                line = orjson.loads(text)
            except orjson.JSONDecodeError:
                continue
            if "frames_in" in line and "t" in line:
                self.last_sample = line
            self.lines.put(line)
        self.lines.put(None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def wait_for(self, predicate: Callable[[Line], bool], timeout: float) -> Line:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildFailed(f"{self.role}: no matching line within {timeout:.0f} s")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise ChildFailed(f"{self.role} exited with {self.proc.wait()}")
            if predicate(line):
                return line

    def ask(self, command: str, key: str, timeout: float = 10.0) -> Line:
        self.send(command)
        return self.wait_for(lambda line: key in line, timeout)

    def frames_in(self) -> int:
        return int(self.last_sample.get("frames_in", 0))

    def close(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass(frozen=True)
class Sample:
    t: float  # monotonic seconds
    frames_in: int
    cpu_s: float  # user + system, the process and its children
    rss_mb: float
    queue: int


class Meter:
    """Samples a child's CPU time, RSS and frame count every ``interval`` seconds."""

    def __init__(self, child: Child, interval: float = 0.5) -> None:
        self.child = child
        self.interval = interval
        self.samples: list[Sample] = []
        self._process = psutil.Process(child.pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="meter", daemon=True)

    def sample(self) -> Sample:
        cpu = self._process.cpu_times()
        last = self.child.last_sample
        s = Sample(time.monotonic(), int(last.get("frames_in", 0)),
                   cpu.user + cpu.system + cpu.children_user + cpu.children_system,
                   self._process.memory_info().rss / 2**20, int(last.get("queue", 0)))
        self.samples.append(s)
        return s

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except psutil.Error:
                return

    def __enter__(self) -> Meter:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def folder_bytes(root: Path, pattern: str = "*/date=*/*.parquet") -> int:
    return sum(p.stat().st_size for p in root.glob(pattern))
