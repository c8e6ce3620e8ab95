"""Round trips to PostgreSQL per accepted web tip, counted on the wire.

``python -m bench roundtrips [--tips N]``: intake runs in process against a fresh embedded
PostgreSQL reached through a counting TCP proxy; each time the client speaks after the server
has, that is one round trip. Tips are posted one at a time after a warm-up and a pause (so
that pooled connections have sat idle once, as between a county's tips), and the count covers
everything intake sends while they are accepted — the rate-limit transaction, the acceptance,
and the outbox relay woken by each commit. Unlike a throughput figure it does not depend on
what else the machine is doing.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from urllib.parse import urlsplit, urlunsplit

import httpx

from bench.stack import Servers, embedded_servers
from services.intake.app import create_app
from services.launcher.embedded import free_port

WARM_UP_TIPS = 20
IDLE_SECONDS = 3.0


class RoundTrips:
    """A TCP proxy to PostgreSQL that counts the client's turns to speak."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.count = 0

    async def serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(self.host, self.port)
        turn = {"last": "server"}
        await asyncio.gather(
            self._copy(client_r, server_w, turn, "client"),
            self._copy(server_r, client_w, turn, "server"),
        )

    async def _copy(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        turn: dict[str, str],
        side: str,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if side == "client" and turn["last"] == "server":
                    self.count += 1
                turn["last"] = side
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


async def measure(servers: Servers, tips: int) -> float:
    settings = servers.settings
    postgres = urlsplit(settings.database_url)
    assert postgres.hostname and postgres.port
    trips = RoundTrips(postgres.hostname, postgres.port)
    port = free_port()
    proxy = await asyncio.start_server(trips.serve, "127.0.0.1", port)
    user = f"{postgres.username}@" if postgres.username else ""
    settings.database_url = urlunsplit(postgres._replace(netloc=f"{user}127.0.0.1:{port}"))
    settings.rate_limit_tips_per_address_per_hour = 10**6
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

                async def post(text: str) -> None:
                    # With an Idempotency-Key, as the citizen page and apps send one.
                    answer = await client.post(
                        "/v1/tips",
                        json={"text": text, "grid_id": "T03V02G01"},
                        headers={"Idempotency-Key": str(uuid.uuid4())},
                    )
                    answer.raise_for_status()

                for n in range(WARM_UP_TIPS):
                    await post(f"路边有人占道摆摊 预热{n}")
                await asyncio.sleep(IDLE_SECONDS)
                before = trips.count
                for n in range(tips):
                    await post(f"有人乱倒垃圾 第{n}次")
                return (trips.count - before) / tips
    finally:
        proxy.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench roundtrips")
    parser.add_argument("--tips", type=int, default=200)
    args = parser.parse_args(argv)
    with embedded_servers(log_level="WARNING") as servers:
        per_tip = asyncio.run(measure(servers, args.tips))
    print(
        f"PostgreSQL round trips per accepted web tip ({args.tips} tips, one at a time): "
        f"{per_tip:.1f}"
    )
