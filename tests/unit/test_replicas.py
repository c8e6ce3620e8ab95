"""``whistle up --replicas``: how many processes of each service, on which ports, and the round
robin in front of them, with real sockets."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable

import pytest

from services.launcher.balancer import RoundRobin
from services.launcher.cli import main
from services.launcher.embedded import free_port
from services.launcher.stack import Replica, parse_replicas, plan_replicas
from services.runtime.settings import SERVICES, Settings


def test_a_number_alone_applies_to_every_service() -> None:
    assert parse_replicas("2") == dict.fromkeys(SERVICES, 2)


def test_named_services_get_their_number_and_the_others_one() -> None:
    assert parse_replicas("dispatch=2, escalation=3") == {
        "intake": 1,
        "dispatch": 2,
        "escalation": 3,
        "ledger": 1,
    }


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("dispatcher=2", "'dispatcher=2'"),
        ("dispatch=two", "'dispatch=two'"),
        ("0", "between 1 and 8"),
        ("ledger=9", "ledger: between 1 and 8"),
        ("", "''"),
    ],
)
def test_a_wrong_count_is_refused_with_what_is_wrong(spec: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_replicas(spec)


def test_the_command_line_refuses_a_wrong_count_before_starting_anything(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["up", "--replicas", "dispatch=0"])
    assert exited.value.code == 2
    assert "dispatch: between 1 and 8 replicas, not 0" in capsys.readouterr().err


def test_one_process_keeps_the_service_port_and_several_get_ports_of_their_own() -> None:
    settings = Settings()
    ports = itertools.count(41000)
    plan = plan_replicas(settings, {"dispatch": 2}, port_for=lambda: next(ports))
    assert plan["intake"] == [Replica("intake", 0, settings.port_of("intake"))]
    assert plan["dispatch"] == [Replica("dispatch", 1, 41000), Replica("dispatch", 2, 41001)]
    assert [r.name for r in plan["dispatch"]] == ["dispatch-1", "dispatch-2"]
    assert plan["intake"][0].name == "intake"


async def _replica(name: str) -> tuple[asyncio.Server, int]:
    """A server that answers every connection with its name and what it was sent."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readline()
        writer.write(name.encode() + b":" + request)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _ask(port: int, line: bytes = b"hello\n") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(line)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


@pytest.fixture
async def balanced() -> AsyncIterator[Callable[[list[int]], RoundRobin],]:
    started: list[RoundRobin] = []

    def start(replicas: list[int]) -> RoundRobin:
        balancer = RoundRobin("127.0.0.1", free_port(), replicas)
        balancer.start()
        started.append(balancer)
        return balancer

    yield start
    for balancer in started:
        balancer.stop()


async def test_connections_go_to_each_replica_in_turn_and_bytes_pass_both_ways(
    balanced: Callable[[list[int]], RoundRobin],
) -> None:
    (one, one_port), (two, two_port) = await _replica("one"), await _replica("two")
    balancer = balanced([one_port, two_port])
    answers = [await _ask(balancer.port, f"request {n}\n".encode()) for n in range(4)]
    assert answers == [
        b"one:request 0\n",
        b"two:request 1\n",
        b"one:request 2\n",
        b"two:request 3\n",
    ]
    one.close()
    two.close()


async def test_a_replica_that_is_down_is_skipped_and_all_down_closes_the_connection(
    balanced: Callable[[list[int]], RoundRobin],
) -> None:
    (one, one_port), (two, two_port) = await _replica("one"), await _replica("two")
    balancer = balanced([one_port, two_port])
    two.close()
    await two.wait_closed()
    assert [await _ask(balancer.port) for _ in range(3)] == [b"one:hello\n"] * 3
    one.close()
    await one.wait_closed()
    assert await _ask(balancer.port) == b""


def test_a_taken_port_fails_at_start() -> None:
    balancer = RoundRobin("127.0.0.1", free_port(), [free_port()])
    balancer.start()
    try:
        with pytest.raises(OSError):
            RoundRobin("127.0.0.1", balancer.port, [free_port()]).start()
    finally:
        balancer.stop()
