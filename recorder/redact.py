"""Keeps the gateway session id out of everything the recorder stores or logs.

The session id from ``/tickle`` is a credential: with it anyone on the machine can drive the
brokerage session. It arrives inside frames (``tic`` replies carry it as ``id``) and leaves in
the ``{"session":…}`` login message, so storage passes every payload through
:meth:`Redactor.apply` before it reaches the journal, and logging goes through
:class:`RedactingFilter`.

A :class:`Redactor` is shared by the session keeper (which learns ids, :meth:`add`) and the
storage writer (which applies them). Ids are only ever added: an old id may still appear in a
late frame after the session changed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from recorder.frames import Frame

REDACTED = b"<redacted>"


class Redactor:
    def __init__(self) -> None:
        self._secrets: tuple[bytes, ...] = ()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        """Register a session id; every later :meth:`apply` replaces it."""
        raw = secret.encode()
        if len(raw) < 4:  # an empty or tiny id would redact ordinary text
            return
        with self._lock:
            if raw not in self._secrets:
                self._secrets = (*self._secrets, raw)

    @property
    def secrets(self) -> tuple[bytes, ...]:
        return self._secrets

    def apply(self, payload: bytes) -> bytes:
        """Return ``payload`` with every known id replaced by ``<redacted>``."""
        for secret in self._secrets:  # the tuple is replaced, never mutated: no lock needed
            if secret in payload:
                payload = payload.replace(secret, REDACTED)
        return payload

    def apply_frames(self, frames: Sequence[Frame]) -> Sequence[Frame]:
        """``frames`` with every known id replaced in their payloads (the same list when no
        payload holds one, which is nearly always: one search over the joined payloads)."""
        secrets = self._secrets
        if not secrets or not frames:
            return frames
        joined = b"\n".join([f.payload for f in frames])
        if not any(secret in joined for secret in secrets):
            return frames
        apply = self.apply
        return [f._replace(payload=apply(f.payload)) for f in frames]

    def apply_text(self, text: str) -> str:
        for secret in self._secrets:
            s = secret.decode()
            if s in text:
                text = text.replace(s, REDACTED.decode())
        return text


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites each record's message through a :class:`Redactor`."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if self._redactor.secrets:
            message = record.getMessage()
            record.msg = self._redactor.apply_text(message)
            record.args = None
        return True
