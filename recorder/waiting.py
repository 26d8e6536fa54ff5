"""Waiting with a time limit, without ever swallowing a cancel.

``asyncio.wait_for`` on Python 3.11 can return normally when the waiting task is cancelled in
the same turn of the loop as the awaited future completes (CPython gh-86296; 3.12 rewrote
``wait_for`` on top of ``asyncio.timeout``). A task the recorder cancels at stop then runs on,
and the task group that owns it never ends: the session keeper, woken by the socket's recheck
as the stop cancelled it, hung a test's teardown this way. ``asyncio.timeout`` (3.11+) has no
such window, so every timed wait in the recorder goes through it.
"""

from __future__ import annotations

import asyncio


async def wait_set(event: asyncio.Event, seconds: float) -> bool:
    """True once ``event`` is set, False if ``seconds`` pass first; a cancel always raises."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
