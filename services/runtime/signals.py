"""Reloading on ``kill -HUP``: what dispatch does with its reference data and escalation with
its business calendar."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable


async def on_sighup(action: Callable[[], Awaitable[None]]) -> None:
    """Run ``action`` after each SIGHUP, one at a time, for as long as the task runs (signals
    arriving during a run are folded into one more run)."""
    loop = asyncio.get_running_loop()
    wanted = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, wanted.set)
    try:
        while True:
            await wanted.wait()
            wanted.clear()
            await action()
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
