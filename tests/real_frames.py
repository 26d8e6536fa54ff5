"""Where the tests find the real captured frames (copied from ../shared/ibkr/frames)."""

from __future__ import annotations

import json
from pathlib import Path

FRAMES_DIR = Path(__file__).resolve().parent / "fixtures" / "frames"


def real_frames(name: str) -> list[bytes]:
    """The exact wire bytes of every frame in ``fixtures/frames/<name>.jsonl``, in file order."""
    lines = (FRAMES_DIR / f"{name}.jsonl").read_text().splitlines()
    return [json.loads(line)["frame"].encode() for line in lines if line.strip()]
