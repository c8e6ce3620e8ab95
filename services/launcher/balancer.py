"""``whistle up --replicas``: several processes of a service behind the one address users call.

A tiny TCP round-robin: each connection accepted on the service's own port goes to the next
replica that accepts a connection (a replica that is down — restarting, or killed — is skipped),
and bytes are copied both ways until either side closes. Balancing is per connection, as
Kubernetes' Service does by default: an HTTP keep-alive connection stays with its replica.
It runs on a thread of its own with its own event loop, beside the supervisor's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence

CONNECT_TIMEOUT_SECONDS = 2.0
CHUNK = 64 * 1024


class RoundRobin:
    def __init__(self, host: str, port: int, replicas: Sequence[int]) -> None:
        self.host, self.port = host, port
        self.replicas = list(replicas)
        self._next = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        """Listen before returning (so a taken port fails here); serve on the thread."""
        self._thread.start()
        listening = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, self.host, self.port), self._loop
        )
        try:
            self._server = listening.result(10)
        except BaseException:
            self._halt()
            raise

    def _halt(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def stop(self) -> None:
        if self._server is None:
            return

        async def close() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._halt()
        self._server = None

    def _order(self) -> list[int]:
        """The replicas' ports, starting from the next one in turn."""
        start = self._next % len(self.replicas)
        self._next += 1
        return self.replicas[start:] + self.replicas[:start]

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        for port in self._order():
            try:
                replica_r, replica_w = await asyncio.wait_for(
                    asyncio.open_connection(self.host, port), CONNECT_TIMEOUT_SECONDS
                )
            except (OSError, TimeoutError):
                continue  # this replica is away: the next
            try:
                await asyncio.gather(_pipe(client_r, replica_w), _pipe(replica_r, client_w))
            finally:
                replica_w.close()
                client_w.close()
            return
        client_w.close()  # every replica away: the client sees the connection closed


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until the reader's side is done, then half-close the writer's: the other direction
    (a response still coming) goes on until its own end."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
