"""The fault suite: what the pipeline loses or doubles when something breaks under load.

One row per fault, each on a fresh stack (its own embedded PostgreSQL and Tansu broker on free
ports, fresh databases, a temporary home), so that every count belongs to its row. Several
clients post tips to intake (each with its own Idempotency-Key, retrying refusals and lost
connections with the same key); once a third of the tips have been accepted the fault is
injected — a frozen or killed broker or database, a killed service, Ctrl-C on ``whistle up`` —
and healed as the supervisor of ``whistle up`` would heal it. Then the system is left to settle,
and the databases are asked what became of every accepted tip: did it reach a case, was
anything done twice, does the ledger's export verify.

The row "no fault" is the same load without a fault: the ceiling the other rows' throughput
compares with, measured in the same run.

    python -m bench faults [--tips 1000] [--clients 4] [--only NAME ...] [--markdown PATH]
                           [--settle 120] [--stall 30] [--logs DIR]

docs/reliability.md says what each fault does, how each column is counted, and what was
measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import yaml
from sqlalchemy.engine import make_url

from bench.load import Posted, generate_load, post_tips
from bench.stack import (
    LOAD_LIMITS,
    REPO,
    Servers,
    Services,
    auditor_token,
    embedded_servers,
    machine,
    running_services,
)
from reference.county import load_reference
from services.launcher.embedded import EmbeddedPostgres, free_port
from services.launcher.stack import prepare
from services.ledger.heads import load_public_key
from services.ledger.verify import verify_export
from services.runtime.settings import SERVICES, Settings

BROKER_FREEZE_SECONDS = 20.0
POSTGRES_FREEZE_SECONDS = 10.0
# What whistle up's supervisor waits before it starts a child that exited for the first time
# (services/launcher/supervisor.py, backoff_seconds).
RESTART_DELAY_SECONDS = 1.0
# Settling ends when everything is accounted for, when nothing has changed for the stall time
# (what is stuck stays stuck; waiting longer only costs the suite's time), or at the limit.
SETTLE_LIMIT_SECONDS = 120.0
SETTLE_STALL_SECONDS = 30.0
# A citizen's app gives up on one tip after this long; a tip given up is a finding.
GIVE_UP_SECONDS = 300.0
# How long a `whistle up` may take to start, and to stop after Ctrl-C (its drain is bounded at
# 60 s, then it stops services and servers).
LAUNCHER_READY_SECONDS = 120.0
LAUNCHER_STOP_SECONDS = 150.0

# Every refusal is retried with the same key, a 500 included: a citizen's app would offer to
# send again, and the retry is what shows whether intake kept the tip once or twice. 500s are
# counted and reported in the row's notes.
RETRIED = frozenset({429, *range(500, 600)})

# Each tip its own case: the load's tips are distinct (generate_load, none retold), and merging
# is off besides, so that every tip has a case path of its own to lose or double.
SUITE_ENV = {
    **LOAD_LIMITS,
    "WHISTLE_MERGE_WINDOW_HOURS": "0",
    "WHISTLE_POLICY_PROFILE": "faults",
}

TIP_RECEIVED = "whistle.tip.received"
CASE_OPENED = "whistle.case.opened"
CASE_ASSIGNED = "whistle.case.assigned"
TRIAGE_REQUIRED = "whistle.case.triage_required"
DEADLINES_SET = "whistle.deadlines.set"
# Events that happen once per subject in this load (no reopening, no reassignment): a second
# one under another event id is the same thing recorded twice.
ONCE_PER_SUBJECT = [TIP_RECEIVED, CASE_OPENED, CASE_ASSIGNED, DEADLINES_SET]
STEP_EVENT = {
    "warning": "whistle.deadline.warning",
    "overdue": "whistle.deadline.overdue",
    "chase": "whistle.case.chased",
    "supervise": "whistle.case.supervised",
}
LADDER_EVENTS = [*STEP_EVENT.values(), "whistle.leadership.notified"]
PRODUCERS = ("intake", "dispatch", "escalation")
# What a database that is down or still recovering raises.
DATABASE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def suite_config(directory: Path) -> Path:
    """deploy/config plus the "faults" policy profile: a first-response clock of 6 s and a
    ladder 2 s apart, so that every case's warning, overdue, chase and supervision fire within
    ten seconds of its assignment — while the faults happen — instead of after working days.
    Resolution clocks run a day and never fire in a run."""
    config = directory / "config"
    shutil.copytree(REPO / "deploy" / "config", config)
    book = yaml.safe_load((config / "policies.yaml").read_text(encoding="utf-8"))
    book["version"] = "faults-1"
    for policy in book["policies"]:
        policy.update(
            first_response={"amount": 6, "unit": "seconds"},
            resolution={"amount": 24, "unit": "hours"},
            warn_at_fraction=0.75,
            chase_after={"amount": 2, "unit": "seconds"},
            supervise_after={"amount": 2, "unit": "seconds"},
        )
    (config / "policies.faults.yaml").write_text(
        yaml.safe_dump(book, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    return config


# --- the stacks the faults act on ---------------------------------------------------------


@dataclass
class Harness:
    """The bench's own embedded servers and the four services as processes: a fault acts on
    exactly the process it names, and the bench heals it as the supervisor would."""

    servers: Servers
    services: Services
    # Services that exited by themselves during the row, and were started again.
    restarts: list[str] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.servers.settings

    def tend(self) -> None:
        """Start again, as whistle up's supervisor would, a service that exited by itself — a
        fault starts what it kills before it returns, so this is another service giving up
        (its log says why) — and say so in the row."""
        for service, process in list(self.services.processes.items()):
            if process.poll() is None:
                continue
            self.restarts.append(
                f"{service} exited by itself (code {process.returncode}); started again"
            )
            time.sleep(RESTART_DELAY_SECONDS)
            self.services.start(service)

    def server_logs(self) -> list[Path]:
        """Logs that go with the servers' temporary directory (the services' are in the row's
        own directory already)."""
        return [self.servers.root / "broker.log", self.servers.postgres.log_path]


@contextmanager
def harness_stack(config: Path, work: Path) -> Iterator[Harness]:
    # The services log into the row's directory, which outlives the servers' temporary one:
    # a service that fails to start leaves its reason there.
    with (
        embedded_servers(config_dir=config) as servers,
        running_services(servers.settings, work, SUITE_ENV) as services,
    ):
        yield Harness(servers, services)


class Launcher:
    """``whistle up`` in a child process, its output in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.launcher.cli", "up"],
                env=env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, within: float) -> None:
        deadline = time.monotonic() + within
        while "whistle: ready" not in self.output():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"whistle up exited {self.process.returncode}:\n{self.output()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"whistle up not ready within {within:.0f}s; see {self.log}")
            time.sleep(0.2)

    def interrupt(self, within: float) -> int | None:
        """Ctrl-C, and the exit code once it has exited (None: it had to be stopped harder,
        with a second Ctrl-C and then SIGKILL)."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(within)
        except subprocess.TimeoutExpired:
            pass
        self.process.send_signal(signal.SIGINT)  # a second Ctrl-C: stop at once
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return None


@dataclass
class Launched:
    """A ``whistle up`` on its own ports and home, started again on the same home by a fault."""

    settings: Settings
    env: dict[str, str]
    directory: Path
    launchers: list[Launcher] = field(default_factory=list)

    @property
    def launcher(self) -> Launcher:
        return self.launchers[-1]

    def start(self) -> None:
        launcher = Launcher(self.env, self.directory / f"whistle-up-{len(self.launchers) + 1}.log")
        self.launchers.append(launcher)
        launcher.wait_ready(LAUNCHER_READY_SECONDS)

    def stop(self) -> None:
        for launcher in self.launchers:
            if launcher.process.poll() is None:
                launcher.interrupt(LAUNCHER_STOP_SECONDS)

    def server_logs(self) -> list[Path]:
        return []  # all under the home, in the row's directory

    def tend(self) -> None:
        pass  # whistle up's own supervisor does

    @property
    def restarts(self) -> list[str]:
        """What the launchers' supervisors said they restarted."""
        return [
            line.strip()
            for launcher in self.launchers
            for line in launcher.output().splitlines()
            if "exited (code" in line or "is unhealthy" in line
        ]


@contextmanager
def launched_stack(config: Path, work: Path) -> Iterator[Launched]:
    """``whistle up`` on free ports, its home in the row's directory ``work``."""
    home = work / "home"
    ports = {name: free_port() for name in (*SERVICES, "embedded_postgres", "embedded_broker")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHISTLE_")}
    env.update(
        {
            "WHISTLE_HOME": str(home),
            "WHISTLE_CONFIG_DIR": str(config),
            "PYTHONUNBUFFERED": "1",
            **SUITE_ENV,
            **{f"WHISTLE_{name.upper()}_PORT": str(port) for name, port in ports.items()},
        }
    )
    settings = Settings(
        home=home,
        config_dir=config,
        database_url=f"postgresql://postgres@127.0.0.1:{ports['embedded_postgres']}/postgres",
        **{f"{name}_port": port for name, port in ports.items()},
    )
    stack = Launched(settings, env, work)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        # As root the data lives under the state directory, outside this one.
        EmbeddedPostgres(home / "postgres" / "data", ports["embedded_postgres"]).remove_data()


Stack = Harness | Launched


# --- the faults ---------------------------------------------------------------------------


def _process(stack: Stack, which: str) -> subprocess.Popen[bytes]:
    assert isinstance(stack, Harness)
    server = stack.servers.broker if which == "broker" else stack.servers.postgres
    process = server.process
    assert process is not None and process.poll() is None, f"{which} is not running"
    return process


def no_fault(stack: Stack) -> str:
    return ""


def freeze_broker(stack: Stack) -> str:
    process = _process(stack, "broker")
    os.kill(process.pid, signal.SIGSTOP)
    try:
        time.sleep(BROKER_FREEZE_SECONDS)
    finally:
        os.kill(process.pid, signal.SIGCONT)
    return f"Tansu (pid {process.pid}) stopped for {BROKER_FREEZE_SECONDS:.0f} s"


def kill_broker(stack: Stack) -> str:
    assert isinstance(stack, Harness)
    process = _process(stack, "broker")
    process.kill()
    process.wait()
    time.sleep(RESTART_DELAY_SECONDS)
    began = time.monotonic()
    # As the launcher restarts it: empty (memory storage), then the topics, before any
    # service's request creates one with the broker's defaults.
    stack.servers.broker.start()
    asyncio.run(prepare(stack.settings, services=()))
    return f"Tansu killed, restarted empty with its topics in {time.monotonic() - began:.1f} s"


def freeze_postgres(stack: Stack) -> str:
    # The postmaster leads its own process group (a session of its own): every backend stops.
    process = _process(stack, "postgres")
    os.killpg(process.pid, signal.SIGSTOP)
    try:
        time.sleep(POSTGRES_FREEZE_SECONDS)
    finally:
        os.killpg(process.pid, signal.SIGCONT)
    return f"PostgreSQL's process group stopped for {POSTGRES_FREEZE_SECONDS:.0f} s"


def kill_postgres(stack: Stack) -> str:
    assert isinstance(stack, Harness)
    process = _process(stack, "postgres")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    time.sleep(RESTART_DELAY_SECONDS)
    began = time.monotonic()
    stack.servers.postgres.start()  # the same data directory: crash recovery from the WAL
    return f"PostgreSQL killed, recovered and ready in {time.monotonic() - began:.1f} s"


def kill_service(service: str) -> Callable[[Stack], str]:
    def kill(stack: Stack) -> str:
        assert isinstance(stack, Harness)
        process = stack.services.processes[service]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        time.sleep(RESTART_DELAY_SECONDS)
        began = time.monotonic()
        stack.services.start(service)
        return f"{service} killed, started again and ready in {time.monotonic() - began:.1f} s"

    return kill


def ctrl_c(stack: Stack) -> str:
    assert isinstance(stack, Launched)
    first = stack.launcher
    began = time.monotonic()
    code = first.interrupt(LAUNCHER_STOP_SECONDS)
    stopped = time.monotonic() - began
    output = first.output()
    drained = (
        "drained"
        if "drained:" in output
        else "drain timed out"
        if "still not drained" in output
        else "no drain"
    )
    began = time.monotonic()
    stack.start()
    exited = f"exited {code}" if code is not None else "did not exit: stopped with SIGKILL"
    return (
        f"first whistle up {exited} {stopped:.0f} s after Ctrl-C ({drained}); "
        f"the second was ready {time.monotonic() - began:.0f} s later"
    )


@dataclass(frozen=True)
class Fault:
    key: str
    label: str
    does: str
    inject: Callable[[Stack], str]
    on_whistle_up: bool = False


FAULTS: tuple[Fault, ...] = (
    Fault("none", "no fault (ceiling)", "the same load, nothing broken", no_fault),
    Fault(
        "broker-frozen",
        f"broker frozen {BROKER_FREEZE_SECONDS:.0f} s",
        "SIGSTOP to the Tansu process, SIGCONT after the pause",
        freeze_broker,
    ),
    Fault(
        "broker-killed",
        "broker killed, restarted empty",
        "SIGKILL to Tansu; started again on the same port with memory storage (everything "
        "it held is gone), then the topics created again, as the launcher does",
        kill_broker,
    ),
    Fault(
        "postgres-frozen",
        f"PostgreSQL frozen {POSTGRES_FREEZE_SECONDS:.0f} s",
        "SIGSTOP to PostgreSQL's whole process group, SIGCONT after the pause",
        freeze_postgres,
    ),
    Fault(
        "postgres-killed",
        "PostgreSQL killed, restarted",
        "SIGKILL to PostgreSQL's whole process group; started again on the same data "
        "(crash recovery)",
        kill_postgres,
    ),
    *(
        Fault(
            f"{service}-killed",
            f"{service} killed, restarted",
            f"SIGKILL to the {service} process; started again as the supervisor would",
            kill_service(service),
        )
        for service in SERVICES
    ),
    Fault(
        "ctrl-c",
        "whistle up: Ctrl-C, started again",
        "the load runs against a `whistle up` subprocess; SIGINT mid-burst, wait for it to "
        "exit, `whistle up` again on the same home",
        ctrl_c,
        on_whistle_up=True,
    ),
)


# --- load -------------------------------------------------------------------------------


class Load(threading.Thread):
    """The citizens, on a thread of their own with their own event loop: the faults and the
    restarts stay on the main thread, because Linux signals a child started with
    PR_SET_PDEATHSIG (every server and service here) when the *thread* that started it ends."""

    def __init__(self, url: str, tips: int, clients: int) -> None:
        super().__init__(daemon=True)
        self.url, self.tips, self.clients = url, tips, clients
        self.posted = Posted()
        self.error: BaseException | None = None
        self._mark = max(1, tips // 3)
        self._third = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(
                post_tips(
                    self.url,
                    # Distinct tips, none retold: each has a case path of its own to lose or
                    # double.
                    generate_load(load_reference(REPO / "deploy" / "config"), self.tips, 0),
                    self.clients,
                    retry_for=GIVE_UP_SECONDS,
                    retry_statuses=RETRIED,
                    on_accepted=self._accepted,
                    posted=self.posted,
                )
            )
        except BaseException as exc:  # reported in the row; the counts still stand
            self.error = exc

    def _accepted(self, count: int) -> None:
        if count >= self._mark:
            self._third.set()

    def wait_for_a_third(self, tend: Callable[[], None]) -> None:
        while not self._third.wait(0.2):
            if not self.is_alive():
                raise RuntimeError(f"the load ended before a third was accepted: {self.error!r}")
            tend()

    def wait(self, tend: Callable[[], None]) -> None:
        deadline = time.monotonic() + GIVE_UP_SECONDS * 2
        while self.is_alive() and time.monotonic() < deadline:
            tend()
            self.join(0.5)


# --- what became of the tips ---------------------------------------------------------------


def _dsn(settings: Settings, service: str) -> str:
    assert settings.database_url is not None
    url = make_url(settings.database_url).set(
        drivername="postgresql", database=f"whistle_{service}"
    )
    return url.render_as_string(hide_password=False)


async def _fetch(settings: Settings, service: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(_dsn(settings, service), timeout=10)
    try:
        return list(await connection.fetch(sql, *args, timeout=60))
    finally:
        await connection.close()


@dataclass(frozen=True)
class Progress:
    # Accepted tips whose intake row has no case, or whose case the ledger does not show
    # assigned (or sent to triage): the citizen's tip did not reach a case, as far as the
    # record shows.
    without_case: int
    # Of those, the tips whose intake row itself has no case (or is missing): what the citizen
    # sees when looking the tip up.
    without_case_in_intake: int
    # Cases the ledger shows assigned that escalation started no clock for.
    without_deadlines: int
    # Events staged in intake's, dispatch's or escalation's outbox that the ledger lacks.
    not_in_ledger: int
    # Ladder steps of first-response clocks not yet fired (they all fall due within seconds).
    ladder_pending: int
    ladder_fired: int
    ledger_size: int
    intake_rows: int

    @property
    def settled(self) -> bool:
        return not (
            self.without_case or self.without_deadlines or self.not_in_ledger or self.ladder_pending
        )


async def probe(settings: Settings, accepted: set[str]) -> Progress:
    tips = await _fetch(settings, "intake", "SELECT tracking_no, case_id FROM tip")
    routed = await _fetch(
        settings,
        "ledger",
        "SELECT DISTINCT type, subject FROM ledger_entry WHERE type = ANY($1::text[])",
        [CASE_ASSIGNED, TRIAGE_REQUIRED],
    )
    reached = {r["subject"] for r in routed}
    assigned = {r["subject"] for r in routed if r["type"] == CASE_ASSIGNED}
    case_of = {r["tracking_no"]: r["case_id"] for r in tips}
    without_case = sum(
        1 for t in accepted if case_of.get(t) is None or str(case_of[t]) not in reached
    )
    without_case_in_intake = sum(1 for t in accepted if case_of.get(t) is None)
    clocks = await _fetch(
        settings,
        "escalation",
        "SELECT DISTINCT case_id FROM deadline WHERE kind = 'first_response'",
    )
    started = {str(r["case_id"]) for r in clocks}
    staged: set[tuple[str, str]] = set()
    for service in PRODUCERS:
        rows = await _fetch(settings, service, "SELECT event->>'source', event_id FROM outbox")
        staged |= {(r[0], r[1]) for r in rows}
    recorded = {
        (r[0], r[1])
        for r in await _fetch(settings, "ledger", "SELECT source, event_id FROM ledger_entry")
    }
    ladder = await _fetch(
        settings,
        "escalation",
        """
        SELECT count(*) FILTER (WHERE s.fired_at IS NULL AND s.cancelled_at IS NULL),
               count(*) FILTER (WHERE s.fired_at IS NOT NULL)
        FROM escalation_step s JOIN deadline d ON d.id = s.deadline_id
        WHERE d.kind = 'first_response'
        """,
    )
    return Progress(
        without_case=without_case,
        without_case_in_intake=without_case_in_intake,
        without_deadlines=len(assigned - started),
        not_in_ledger=len(staged - recorded),
        ladder_pending=ladder[0][0],
        ladder_fired=ladder[0][1],
        ledger_size=len(recorded),
        intake_rows=len(tips),
    )


async def settle(
    settings: Settings, accepted: set[str], limit: float, stall: float, tend: Callable[[], None]
) -> tuple[Progress | None, bool]:
    """Poll until every accepted tip is accounted for, or nothing changes for ``stall``
    seconds, or ``limit`` seconds have passed."""
    began = changed = time.monotonic()
    last: Progress | None = None
    while True:
        tend()
        try:
            now = await probe(settings, accepted)
        except DATABASE_ERRORS:
            now = None  # a database still recovering: not settled yet
        if now is not None and now.settled:
            return now, True
        if now != last:
            last, changed = now, time.monotonic()
        elapsed = time.monotonic() - began
        if elapsed > limit or time.monotonic() - changed > stall:
            return last, False
        await asyncio.sleep(1)


@dataclass(frozen=True)
class Doubles:
    # Cases with more than one CaseAssigned, in dispatch's outbox or in the ledger.
    assigned_twice: int
    # Ledger entries of the same CloudEvent (source, id), or a second entry of an event that
    # happens once per subject here (a tip received, a case opened/assigned, deadlines set).
    ledger_twice: int
    # (case, clock, round, step) fired more than once: in escalation's table, its outbox, or
    # the ledger.
    ladder_twice: int


async def doubles(settings: Settings) -> Doubles:
    same_event = await _fetch(
        settings,
        "ledger",
        "SELECT source, event_id FROM ledger_entry GROUP BY 1, 2 HAVING count(*) > 1",
    )
    once = await _fetch(
        settings,
        "ledger",
        "SELECT type, subject FROM ledger_entry WHERE type = ANY($1::text[]) "
        "GROUP BY 1, 2 HAVING count(*) > 1",
        ONCE_PER_SUBJECT,
    )
    assigned = {
        r[0]
        for r in await _fetch(
            settings,
            "dispatch",
            "SELECT key FROM outbox WHERE event->>'type' = $1 GROUP BY 1 HAVING count(*) > 1",
            CASE_ASSIGNED,
        )
    } | {r["subject"] for r in once if r["type"] == CASE_ASSIGNED}
    steps = await _fetch(
        settings,
        "escalation",
        """
        SELECT d.case_id::text, d.kind, d.round::text, s.step
        FROM escalation_step s JOIN deadline d ON d.id = s.deadline_id
        WHERE s.fired_at IS NOT NULL
        GROUP BY d.case_id, d.kind, d.round, d.whistle_id, d.department_code, s.generation, s.step
        HAVING count(*) > 1
        """,
    )
    ladder = {(r[0], r[1], r[2], STEP_EVENT.get(r[3], r[3])) for r in steps}
    staged = await _fetch(
        settings,
        "escalation",
        """
        SELECT event->>'subject', event->'data'->>'kind', event->'data'->>'round', event->>'type'
        FROM outbox WHERE event->>'type' = ANY($1::text[])
        GROUP BY topic, 1, 2, 3, 4, event->'data'->>'whistle_id', event->'data'->>'department_code'
        HAVING count(*) > 1
        """,
        LADDER_EVENTS,
    )
    recorded = await _fetch(
        settings,
        "ledger",
        """
        SELECT subject, e->'data'->>'kind', e->'data'->>'round', type
        FROM (SELECT *, convert_from(canonical, 'UTF8')::jsonb AS e FROM ledger_entry
              WHERE type = ANY($1::text[])) l
        GROUP BY topic, 1, 2, 3, 4, e->'data'->>'whistle_id', e->'data'->>'department_code'
        HAVING count(*) > 1
        """,
        LADDER_EVENTS,
    )
    ladder |= {(r[0], r[1], r[2], r[3]) for r in [*staged, *recorded]}
    return Doubles(
        assigned_twice=len(assigned),
        ledger_twice=len(same_event) + sum(1 for r in once if r["type"] != CASE_ASSIGNED),
        ladder_twice=len(ladder),
    )


async def broker_records(settings: Settings) -> tuple[int, int]:
    """Events staged in the outboxes, and records the broker's logs hold for them (by the
    offsets the relays were last acknowledged): far more records than events means events
    were sent again and again."""
    events = records = 0
    for service in PRODUCERS:
        rows = await _fetch(
            settings,
            service,
            "SELECT count(*), coalesce(max(kafka_offset) + 1, 0) FROM outbox "
            "GROUP BY topic, kafka_partition",
        )
        events += sum(r[0] for r in rows)
        records += sum(r[1] for r in rows)
    return events, records


async def export_verifies(settings: Settings) -> tuple[bool, str]:
    """Sign the log as it is now, export it as an auditor would, and check the export offline
    against the ledger's public key as kept under the home (not as the service serves it)."""
    async with httpx.AsyncClient(
        base_url=settings.url_of("ledger"),
        headers={"authorization": f"Bearer {auditor_token(settings)}"},
        timeout=120,
    ) as client:
        (await client.post("/v1/tree-heads")).raise_for_status()
        response = await client.get("/v1/export")
        response.raise_for_status()
    key = load_public_key(settings.ledger_public_key_path.read_bytes())
    report = verify_export(response.content.splitlines(keepends=True), key)
    size = report.head.tree_size if report.head else 0
    return report.ok, f"{size} entries" + ("" if report.ok else f": {report.render()}")


# --- a row ----------------------------------------------------------------------------------


@dataclass
class Row:
    fault: Fault
    accepted: int
    tips_per_second: float
    progress: Progress | None
    settled: bool
    settle_seconds: float
    doubles: Doubles | None
    # None: no export could be had (the ledger not answering).
    verifies: bool | None
    notes: list[str]
    given_up: int

    @property
    def stored_twice(self) -> int:
        """Intake rows beyond the tips accepted: a retry stored as a new tip."""
        return max(0, self.progress.intake_rows - self.accepted) if self.progress else 0

    @property
    def clean(self) -> bool:
        p, d = self.progress, self.doubles
        return (
            p is not None
            and d is not None
            and self.settled
            and self.verifies
            and not self.given_up
            and not self.stored_twice
            and not (p.without_case or p.without_deadlines or p.not_in_ledger)
            and not (d.assigned_twice or d.ledger_twice or d.ladder_twice)
        )


LOG_LEVEL = re.compile(r'"level":\s*"(ERROR|CRITICAL)"')


def log_summary(files: list[Path]) -> list[str]:
    """The service and launcher logs' errors, by file and message (servers' logs are kept
    but not summarised: a killed server's recovery is logged as a matter of course)."""
    lines = []
    for path in files:
        if not path.exists() or path.name in ("broker.log", "postgres.log"):
            continue
        messages: Counter[str] = Counter()
        tracebacks = 0
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if LOG_LEVEL.search(line):
                try:
                    messages[str(json.loads(line).get("message", ""))[:120]] += 1
                except ValueError:
                    messages[line[:120]] += 1
            elif line.startswith("Traceback"):
                tracebacks += 1
        if messages or tracebacks:
            top = "; ".join(f"{n}× {m}" for m, n in messages.most_common(3))
            lines.append(
                f"{path.name}: {sum(messages.values())} error lines"
                + (f", {tracebacks} tracebacks" if tracebacks else "")
                + (f" — {top}" if top else "")
            )
    return lines


def run_row(fault: Fault, args: argparse.Namespace, config: Path, work: Path) -> Row:
    """One row on a fresh stack; every log it wrote ends up in ``work``."""
    stacks = launched_stack if fault.on_whistle_up else harness_stack
    with stacks(config, work) as stack:
        try:
            return measure(fault, stack, args)
        finally:
            for path in stack.server_logs():
                if path.exists():
                    shutil.copy2(path, work / path.name)


def measure(fault: Fault, stack: Stack, args: argparse.Namespace) -> Row:
    load = Load(stack.settings.url_of("intake"), args.tips, args.clients)
    load.start()
    load.wait_for_a_third(stack.tend)
    note = fault.inject(stack)
    load.wait(stack.tend)
    posted = load.posted
    began = time.monotonic()
    accepted = set(posted.tracking.values())
    progress, settled = asyncio.run(
        settle(stack.settings, accepted, args.settle, args.stall, stack.tend)
    )
    settle_seconds = time.monotonic() - began
    notes = [note] if note else []
    notes.extend(stack.restarts)
    try:
        found: Doubles | None = asyncio.run(doubles(stack.settings))
    except DATABASE_ERRORS as exc:
        found = None
        notes.append(f"duplicates not counted: {exc!r}")
    try:
        events, records = asyncio.run(broker_records(stack.settings))
        if records > 1.5 * events:
            notes.append(
                f"the broker's logs hold {records} records for {events} events staged: "
                "events were sent again and again"
            )
    except DATABASE_ERRORS as exc:
        notes.append(f"broker records not counted: {exc!r}")
    verifies: bool | None
    try:
        verifies, verdict = asyncio.run(export_verifies(stack.settings))
        notes.append(f"export: {verdict}")
    except (OSError, httpx.HTTPError, ValueError) as exc:
        verifies = None
        notes.append(f"export failed: {exc!r}")
    if posted.retried:
        notes.append(
            "retried: " + ", ".join(f"{n}× {what}" for what, n in posted.retried.most_common())
        )
    if posted.given_up:
        notes.append(f"{len(posted.given_up)} tips given up after {GIVE_UP_SECONDS:.0f} s")
    if load.error is not None:
        notes.append(f"the load stopped: {load.error!r}")
    if not settled:
        notes.append(f"not settled: {progress}")
    return Row(
        fault=fault,
        accepted=len(accepted),
        tips_per_second=len(posted.tracking) / posted.elapsed if posted.elapsed else 0.0,
        progress=progress,
        settled=settled,
        settle_seconds=settle_seconds,
        doubles=found,
        verifies=verifies,
        notes=notes,
        given_up=len(posted.given_up),
    )


def keep_logs(work: Path, keep: Path | None, key: str) -> Path:
    """The row's logs, copied to ``keep`` (or a new directory in /tmp) under the fault's key."""
    target = (keep or Path(tempfile.mkdtemp(prefix="whistle-faults-logs-"))) / key
    target.mkdir(parents=True, exist_ok=True)
    for path in work.rglob("*.log"):
        shutil.copy2(path, target / path.name)
    return target


# --- the table ------------------------------------------------------------------------------

COLUMNS = (
    "fault",
    "tips accepted",
    "tips/s",
    "accepted without a case",
    "cases without deadlines",
    "events missing from ledger",
    "tips stored twice",
    "cases assigned twice",
    "ledger events twice",
    "ladder steps fired twice (of fired)",
    "export verifies",
    "settle s",
)


def _cells(row: Row) -> list[str]:
    p, d = row.progress, row.doubles

    def n(value: int | None) -> str:
        return "?" if value is None else str(value)

    return [
        row.fault.label,
        str(row.accepted) + (f" ({row.given_up} given up)" if row.given_up else ""),
        f"{row.tips_per_second:.0f}",
        n(p.without_case if p else None)
        + (f" ({p.without_case_in_intake} in intake)" if p and p.without_case else ""),
        n(p.without_deadlines if p else None),
        n(p.not_in_ledger if p else None),
        n(row.stored_twice if p else None),
        n(d.assigned_twice if d else None),
        n(d.ledger_twice if d else None),
        f"{n(d.ladder_twice if d else None)} ({n(p.ladder_fired if p else None)})",
        {True: "yes", False: "NO", None: "no export"}[row.verifies],
        f"{row.settle_seconds:.0f}" + ("" if row.settled else " (not settled)"),
    ]


def render(rows: list[Row], markdown: bool) -> str:
    table = [list(COLUMNS), *(_cells(r) for r in rows)]
    if markdown:
        lines = ["| " + " | ".join(cells) + " |" for cells in table]
        lines.insert(1, "|" + "|".join("---" for _ in COLUMNS) + "|")
        return "\n".join(lines)
    widths = [max(len(cells[i]) for cells in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU model unknown"


def report(rows: list[Row], args: argparse.Namespace, minutes: float, markdown: bool) -> str:
    ceiling = next((r for r in rows if r.fault.key == "none"), None)
    head = (
        f"Whistle fault suite — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {machine()}, "
        f"{cpu_model()}\n"
        f"{args.tips} tips a row from {args.clients} clients; a fresh stack a row; "
        f"{minutes:.1f} min in all"
        + (f"; ceiling (no fault): {ceiling.tips_per_second:.0f} tips/s" if ceiling else "")
    )
    notes = [f"- {r.fault.label}: {note}" for r in rows for note in r.notes]
    verdict = [
        f"FINDING: {r.fault.label} lost or doubled something, or did not settle"
        for r in rows
        if not r.clean
    ]
    return "\n\n".join(
        part
        for part in (
            head,
            render(rows, markdown),
            "\n".join(notes),
            "\n".join(verdict) or "Every row: nothing lost, nothing doubled.",
        )
        if part
    )


def main(argv: list[str]) -> None:
    keys = [f.key for f in FAULTS]
    parser = argparse.ArgumentParser(prog="python -m bench faults")
    parser.add_argument("--tips", type=int, default=1000, help="tips posted in each row")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument(
        "--only", nargs="+", choices=keys, metavar="NAME", help=f"some rows: {', '.join(keys)}"
    )
    parser.add_argument("--markdown", type=Path, help="also write the table as markdown here")
    parser.add_argument(
        "--logs",
        type=Path,
        help="keep every row's logs here (default: only a row's that lost or doubled something)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=SETTLE_LIMIT_SECONDS,
        help="at most this long for everything to be accounted for after load and fault",
    )
    parser.add_argument(
        "--stall",
        type=float,
        default=SETTLE_STALL_SECONDS,
        help="stop waiting when nothing has changed for this long",
    )
    args = parser.parse_args(argv)
    chosen = [f for f in FAULTS if not args.only or f.key in args.only]
    began = time.monotonic()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="whistle-faults-") as tmp:
        config = suite_config(Path(tmp))
        for fault in chosen:
            print(f"{fault.label}: {fault.does}", flush=True)
            work = Path(tmp) / fault.key
            work.mkdir()
            try:
                row = run_row(fault, args, config, work)
            except Exception as exc:  # one broken row must not cost the others
                row = Row(fault, 0, 0.0, None, False, 0.0, None, None, [f"failed: {exc!r}"], 0)
            row.notes.extend(log_summary(sorted(work.rglob("*.log"))))
            if args.logs is not None or not row.clean:
                row.notes.append(f"logs kept in {keep_logs(work, args.logs, fault.key)}")
            # Logs at INFO run to tens of megabytes a row: only what is kept stays.
            shutil.rmtree(work, ignore_errors=True)
            rows.append(row)
            print("  " + " | ".join(_cells(row)[1:]), flush=True)
    minutes = (time.monotonic() - began) / 60
    print("\n" + report(rows, args, minutes, markdown=False))
    if args.markdown:
        args.markdown.write_text(
            report(rows, args, minutes, markdown=True) + "\n", encoding="utf-8"
        )
