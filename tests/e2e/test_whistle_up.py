"""``whistle up`` as a user runs it: embedded servers, Ctrl-C, restart, ports taken."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from reference.county import load_reference
from services.launcher.embedded import EmbeddedPostgres, free_port, port_is_free
from services.ledger.merkle import Frontier
from services.runtime.settings import SERVICES, Settings
from tests.conftest import REPO
from tests.support.infra import Infra, eventually
from tests.support.journey import case_of, complete_trail, submit

pytestmark = pytest.mark.e2e

READY_WITHIN = 30  # seconds: what the README promises for a start on a fresh machine


class Launcher:
    """``whistle up`` in a child process, its output collected line by line."""

    def __init__(self, env: dict[str, str], *options: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.launcher.cli", "up", *options],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, within: float) -> None:
        deadline = time.monotonic() + within
        while not any(text in line for line in self.lines):
            if self.process.poll() is not None:
                self._reader.join(2)
                raise AssertionError(f"whistle up exited {self.process.returncode}:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {within}s:\n{self.output}")
            time.sleep(0.05)

    def interrupt(self) -> int:
        """What Ctrl-C does."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(60)
        self._reader.join(2)
        return code


def _environment(home: Path, ports: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHISTLE_")}
    env.update(
        {
            "WHISTLE_HOME": str(home),
            "PYTHONUNBUFFERED": "1",
            **{f"WHISTLE_{name.upper()}_PORT": str(port) for name, port in ports.items()},
        }
    )
    return env


@pytest.fixture
def ports() -> dict[str, int]:
    names = [*SERVICES, "embedded_postgres", "embedded_broker"]
    return {name: free_port() for name in names}


def _settings_for(home: Path, ports: dict[str, int]) -> Settings:
    return Settings(home=home, **{f"{name}_port": port for name, port in ports.items()})


@pytest.fixture
def launcher_factory(ports: dict[str, int], tmp_path: Path) -> Iterator[list[Launcher]]:
    started: list[Launcher] = []
    yield started
    for launcher in started:
        if launcher.process.poll() is None:
            launcher.interrupt()
    # As root the data lives outside the test's directory (services/launcher/embedded.py).
    EmbeddedPostgres(
        tmp_path / "home" / "postgres" / "data", ports["embedded_postgres"]
    ).remove_data()


def _as_recorded(trail: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A trail's entries without their proofs, which are against the latest signed head and so
    change as the log grows."""
    return [{k: v for k, v in entry.items() if k != "inclusion_path"} for entry in trail]


def _all_ports_free(ports: dict[str, int]) -> bool:
    return all(port_is_free("127.0.0.1", port) for port in ports.values())


async def test_up_serves_stops_cleanly_and_keeps_data_across_restarts(
    tmp_path: Path, ports: dict[str, int], launcher_factory: list[Launcher]
) -> None:
    home = tmp_path / "home"
    env = _environment(home, ports)
    settings = _settings_for(home, ports)

    first = Launcher(env)
    launcher_factory.append(first)
    first.wait_for("whistle: ready", within=READY_WITHIN)
    for service in SERVICES:
        assert settings.url_of(service) in first.output
    assert "auditor:" in first.output
    assert f"{settings.url_of('dispatch')}/console" in first.output  # the pages are listed
    auditor_token = first.lines[first.lines.index("  auditor:") + 1].strip()

    async with httpx.AsyncClient(timeout=10) as http:
        for service in SERVICES:
            ready = await http.get(f"{settings.url_of(service)}/readyz")
            assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
        tip = await submit(http, settings, {"text": "路边有人占道摆摊", "grid_id": "T05V01G01"})
        case_id = await case_of(http, settings, tip)
        trail_before = await complete_trail(http, settings, case_id, auditor_token)

    assert first.interrupt() == 0
    assert _all_ports_free(ports), "Ctrl-C left something listening"
    assert not (home / "postgres" / "data" / "postmaster.pid").exists()

    second = Launcher(env)
    launcher_factory.append(second)
    second.wait_for("whistle: ready", within=READY_WITHIN)
    async with httpx.AsyncClient(timeout=10) as http:
        status = await http.get(
            f"{settings.url_of('intake')}/v1/tips/{tip.tracking_no}",
            headers={"Access-Code": tip.access_code},
        )
        assert status.status_code == 200
        assert status.json()["case_id"] == case_id
        assert status.json()["status"] == "assigned"
        trail_after = await complete_trail(http, settings, case_id, auditor_token)
        assert _as_recorded(trail_after) == _as_recorded(trail_before)
        # and the restarted stack still routes new tips
        fresh = await submit(http, settings, {"text": "有人乱倒垃圾", "grid_id": "T05V01G01"})
        await complete_trail(http, settings, await case_of(http, settings, fresh), auditor_token)
    assert second.interrupt() == 0
    assert _all_ports_free(ports)


def test_up_refuses_a_taken_port_and_starts_nothing(
    tmp_path: Path, ports: dict[str, int], launcher_factory: list[Launcher]
) -> None:
    home = tmp_path / "home"
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports["dispatch"]))
        squatter.listen()
        launcher = Launcher(_environment(home, ports))
        launcher_factory.append(launcher)
        code = launcher.process.wait(30)
        launcher._reader.join(2)
    assert code != 0
    assert f"{ports['dispatch']} (dispatch)" in launcher.output
    assert _all_ports_free(ports)
    assert not (home / "postgres").exists(), "no database was started"


def test_up_refuses_an_invalid_configuration_before_starting_anything(
    tmp_path: Path, ports: dict[str, int], launcher_factory: list[Launcher]
) -> None:
    config = tmp_path / "config"
    shutil.copytree(REPO / "deploy" / "config", config)
    units = config / "units.yaml"
    units.write_text(units.read_text(encoding="utf-8").replace("township: T02", "township: T77", 1))
    env = _environment(tmp_path / "home", ports)
    env["WHISTLE_CONFIG_DIR"] = str(config)
    launcher = Launcher(env)
    launcher_factory.append(launcher)
    code = launcher.process.wait(30)
    launcher._reader.join(2)
    assert code == 2
    assert "unknown township 'T77'" in launcher.output
    assert not (tmp_path / "home").exists()
    assert _all_ports_free(ports)


def test_up_uses_the_servers_it_is_given(
    tmp_path: Path, ports: dict[str, int], infra: Infra, launcher_factory: list[Launcher]
) -> None:
    home = tmp_path / "home"
    env = _environment(home, ports)
    env["WHISTLE_DATABASE_URL"] = infra.database_url
    env["WHISTLE_KAFKA_BOOTSTRAP"] = infra.bootstrap
    env["WHISTLE_KAFKA_ENABLE_IDEMPOTENCE"] = "false"  # Tansu stands in for the external Kafka
    launcher = Launcher(env)
    launcher_factory.append(launcher)
    launcher.wait_for("whistle: ready", within=READY_WITHIN)
    assert "embedded" not in launcher.output
    assert not (home / "postgres").exists()
    assert port_is_free("127.0.0.1", ports["embedded_postgres"])
    assert port_is_free("127.0.0.1", ports["embedded_broker"])
    assert launcher.interrupt() == 0


async def test_a_service_that_dies_is_started_again_and_the_stack_carries_on(
    tmp_path: Path, ports: dict[str, int], launcher_factory: list[Launcher]
) -> None:
    home = tmp_path / "home"
    settings = _settings_for(home, ports)
    launcher = Launcher(_environment(home, ports))
    launcher_factory.append(launcher)
    launcher.wait_for("whistle: ready", within=READY_WITHIN)
    dispatch_pid = _listening_pid(ports["dispatch"])
    os.kill(dispatch_pid, signal.SIGKILL)
    launcher.wait_for("whistle: dispatch exited (code -9)", within=10)
    launcher.wait_for("whistle: dispatch started again (restart 1)", within=15)
    async with httpx.AsyncClient(timeout=10) as http:
        tip = await submit(http, settings, {"text": "路边有人占道摆摊", "grid_id": "T05V01G01"})
        assert await case_of(http, settings, tip, within=60)
    assert _listening_pid(ports["dispatch"]) != dispatch_pid
    assert launcher.interrupt() == 0
    assert _all_ports_free(ports)


@pytest.mark.parametrize("presses", [1, 2], ids=["drained", "stopped-at-once"])
async def test_ctrl_c_mid_burst_and_a_restart_leave_every_accepted_tip_with_a_case(
    tmp_path: Path, ports: dict[str, int], launcher_factory: list[Launcher], presses: int
) -> None:
    """The operator's worst moment: Ctrl-C while citizens are sending tips, then ``make run``
    again. Once, the stack drains first; twice, it stops at once with events in flight, which
    the embedded broker then forgets: the outboxes must send them again. Either way every tip
    that was answered 201 reaches a case, and nobody gets a 500."""
    home = tmp_path / "home"
    env = {**_environment(home, ports), **BURST_LIMITS}
    settings = _settings_for(home, ports)
    first = Launcher(env)
    launcher_factory.append(first)
    first.wait_for("whistle: ready", within=READY_WITHIN)

    accepted: list[str] = []
    refused: list[httpx.Response] = []

    async def citizen(client_no: int) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            for n in range(BURST // CLIENTS):
                try:
                    answer = await http.post(
                        f"{settings.url_of('intake')}/v1/tips",
                        json={"text": f"路边有人占道摆摊 {client_no}-{n}", "grid_id": "T05V01G01"},
                    )
                except httpx.TransportError:
                    return  # the stack has stopped
                if answer.status_code == 201:
                    accepted.append(answer.json()["tracking_no"])
                    if len(accepted) >= BURST // 3:
                        a_third_accepted.set()
                else:
                    refused.append(answer)

    a_third_accepted = asyncio.Event()

    async def interrupt_mid_burst() -> None:
        await a_third_accepted.wait()
        first.process.send_signal(signal.SIGINT)
        if presses == 2:
            await asyncio.to_thread(first.wait_for, "draining: intake refuses", 10)
            first.process.send_signal(signal.SIGINT)

    await asyncio.gather(interrupt_mid_burst(), *(citizen(c) for c in range(CLIENTS)))
    assert await asyncio.to_thread(first.process.wait, 90) == 0
    first._reader.join(2)
    assert "draining: intake refuses new tips" in first.output
    if presses == 2:
        assert "stopping without draining" in first.output
    for answer in refused:  # while draining: 503 with Retry-After, never a 500
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert int(answer.headers["retry-after"]) > 0

    second = Launcher(env)
    launcher_factory.append(second)
    second.wait_for("whistle: ready", within=READY_WITHIN)
    intake_db = f"postgresql://postgres@127.0.0.1:{ports['embedded_postgres']}/whistle_intake"

    async def every_tip_has_a_case() -> bool:
        conn = await asyncpg.connect(intake_db)
        try:
            rows = await conn.fetch(
                "SELECT tracking_no FROM tip WHERE tracking_no = ANY($1) AND case_id IS NULL",
                accepted,
            )
        finally:
            await conn.close()
        return not rows

    await eventually(every_tip_has_a_case, within=90, what="a case for every accepted tip", every=1)
    assert len(accepted) >= BURST // 3
    assert second.interrupt() == 0


async def test_two_replicas_of_every_service_lose_and_double_nothing_when_replicas_are_killed(
    tmp_path: Path, ports: dict[str, int], launcher_factory: list[Launcher]
) -> None:
    """``whistle up --replicas 2``: two processes of each service share one database and one
    consumer group each, behind the service's one address. Mid-burst one dispatch, one
    escalation and one ledger replica are killed: the group gives their partitions to the other
    replica, the supervisor starts them again, and in the end every accepted tip was recorded
    once, opened or joined exactly one case, and got its deadlines once; the ledger is one
    gap-free log."""
    home = tmp_path / "home"
    env = {**_environment(home, ports), **BURST_LIMITS}
    settings = _settings_for(home, ports)
    launcher = Launcher(env, "--replicas", "2")
    launcher_factory.append(launcher)
    launcher.wait_for("whistle: ready", within=2 * READY_WITHIN)
    replicas = {
        f"{service}-{n}": int(port)
        for service, n, port in re.findall(r"(\w+)-(\d) :(\d+)", launcher.output)
    }
    assert sorted(replicas) == sorted(f"{s}-{n}" for s in SERVICES for n in (1, 2))
    grids = sorted(load_reference(REPO / "deploy" / "config").grids)

    accepted: list[str] = []
    a_third_accepted = asyncio.Event()

    async def citizen(client_no: int) -> None:
        # A client of its own each: the round robin balances connections, not requests.
        async with httpx.AsyncClient(timeout=30) as http:
            for n in range(BURST // CLIENTS):
                answer = await http.post(
                    f"{settings.url_of('intake')}/v1/tips",
                    json={
                        "text": f"路边有人占道摆摊 {client_no}-{n}",
                        "grid_id": grids[(client_no * BURST + n) % len(grids)],
                    },
                )
                assert answer.status_code == 201, answer.text
                accepted.append(answer.json()["tip_id"])
                if len(accepted) >= BURST // 3:
                    a_third_accepted.set()

    killed = ("dispatch-1", "escalation-2", "ledger-1")

    async def kill_mid_burst() -> None:
        await a_third_accepted.wait()
        for name in killed:
            os.kill(_listening_pid(replicas[name]), signal.SIGKILL)

    await asyncio.gather(kill_mid_burst(), *(citizen(c) for c in range(CLIENTS)))
    for name in killed:
        await asyncio.to_thread(launcher.wait_for, f"whistle: {name} started again", 30)

    db = f"postgresql://postgres@127.0.0.1:{ports['embedded_postgres']}"

    async def fetch(database: str, query: str, *args: object) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(f"{db}/whistle_{database}")
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def every_tip_recorded_with_its_deadlines() -> bool:
        open_tips = await fetch(
            "intake", "SELECT 1 FROM tip WHERE id::text = ANY($1) AND case_id IS NULL", accepted
        )
        received = await fetch(
            "ledger", "SELECT 1 FROM ledger_entry WHERE type = 'whistle.tip.received'"
        )
        cases = await fetch("dispatch", "SELECT id FROM cases")
        with_deadlines = await fetch(
            "ledger",
            "SELECT DISTINCT subject FROM ledger_entry WHERE type = 'whistle.deadlines.set'",
        )
        return not open_tips and len(received) == BURST and len(with_deadlines) >= len(cases)

    await eventually(
        every_tip_recorded_with_its_deadlines, within=120, what="every tip through", every=1
    )
    assert len(accepted) == BURST
    opened = await fetch(
        "dispatch", "SELECT tip_id FROM cases WHERE tip_id::text = ANY($1)", accepted
    )
    joined = await fetch(
        "dispatch", "SELECT tip_id FROM case_tip WHERE tip_id::text = ANY($1)", accepted
    )
    assert sorted(str(r["tip_id"]) for r in [*opened, *joined]) == sorted(accepted)
    doubled = await fetch(
        "ledger",
        "SELECT subject, type, count(*) FROM ledger_entry "
        "WHERE type IN ('whistle.case.opened', 'whistle.deadlines.set') "
        "GROUP BY subject, type HAVING count(*) > 1",
    )
    assert doubled == []
    entries = await fetch("ledger", "SELECT seq, leaf_hash FROM ledger_entry ORDER BY seq")
    assert [r["seq"] for r in entries] == list(range(len(entries)))
    # Whichever replica signed a head, it is a head of this one log: no fork.
    heads = {
        r["tree_size"]: bytes(r["root_hash"])
        for r in await fetch("ledger", "SELECT tree_size, root_hash FROM tree_head")
    }
    assert max(heads) > 0
    log = Frontier()
    for entry in entries:
        log.append(bytes(entry["leaf_hash"]))
        if log.size in heads:
            assert log.root() == heads[log.size], f"the head at {log.size} is not of this log"
    # Both intake replicas took tips: the round robin shared the citizens between them.
    async with httpx.AsyncClient(timeout=10) as http:
        for name in ("intake-1", "intake-2"):
            metrics = (await http.get(f"http://127.0.0.1:{replicas[name]}/metrics")).text
            assert re.search(r'route="/v1/tips"[^\n]*status="201"[^\n]* [1-9]', metrics), name
    assert launcher.interrupt() == 0
    assert _all_ports_free({**ports, **replicas})


BURST = 120
CLIENTS = 4
BURST_LIMITS = {
    "WHISTLE_RATE_LIMIT_TIPS_PER_ADDRESS_PER_HOUR": "100000",
    "WHISTLE_RATE_LIMIT_TIPS_PER_PHONE_PER_DAY": "100000",
}


def _listening_pid(port: int) -> int:
    """The pid of the process listening on a local TCP port (from /proc, as ss would)."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                inode = fields[9]
    assert inode is not None, f"nothing listens on {port}"
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if os.readlink(fd) == f"socket:[{inode}]":
                return int(fd.parts[2])
        except OSError:
            continue
    raise AssertionError(f"no process owns the socket on port {port}")
