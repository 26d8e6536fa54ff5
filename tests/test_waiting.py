"""Timed waits never swallow a cancel (recorder/waiting.py; CPython gh-86296 on 3.11)."""

from __future__ import annotations

import asyncio

import pytest

from recorder.waiting import wait_set


@pytest.mark.parametrize("ticks", range(4))
def test_a_cancel_as_the_event_is_set_is_never_swallowed(ticks: int) -> None:
    """The event is set and the waiter cancelled ``ticks`` turns of the loop apart, covering
    the turn where 3.11's ``asyncio.wait_for`` returns instead of raising."""

    async def main() -> str:
        event = asyncio.Event()

        async def waiter() -> str:
            await wait_set(event, 10.0)
            for _ in range(10):  # still running when the cancel comes, whichever turn it is
                await asyncio.sleep(0)
            return "ran on after the cancel"

        task = asyncio.create_task(waiter())
        await asyncio.sleep(0)
        event.set()
        for _ in range(ticks):
            await asyncio.sleep(0)
        task.cancel()
        try:
            return await task
        except asyncio.CancelledError:
            return "cancelled"

    assert asyncio.run(main()) == "cancelled"


def test_wait_set_says_whether_the_event_came() -> None:
    async def main() -> tuple[bool, bool]:
        event = asyncio.Event()
        timed_out = await wait_set(event, 0.01)
        asyncio.get_running_loop().call_soon(event.set)
        return timed_out, await wait_set(event, 10.0)

    assert asyncio.run(main()) == (False, True)
