"""Serving an app on a free loopback port, for tests that need a real HTTP server (browsers,
streamed uploads)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from services.launcher.embedded import free_port


@asynccontextmanager
async def serving(app: Any, port: int | None = None) -> AsyncIterator[str]:
    """The app running under uvicorn (lifespan included) until the block ends; yields its URL.
    ``port``: one chosen beforehand (two apps that must know each other's origin)."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:  # polls uvicorn's own flag; a failed start raises here
        if serving.done():
            serving.result()
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving
