from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator

import httpx
import pytest

from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.support.stack import ServiceProcesses

# Lines of each service's log shown under a failed test: what the services did is often the
# only account of why an event never arrived.
LOG_TAIL_LINES = 60


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    processes = getattr(item, "funcargs", {}).get("services")
    if report.failed and isinstance(processes, ServiceProcesses):
        for log in sorted(processes.logs.glob("*.log")):
            lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
            report.sections.append((f"{log.stem} log", "\n".join(lines[-LOG_TAIL_LINES:])))
    return report


@pytest.fixture(scope="module")
def services(
    migrated: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcesses]:
    processes = ServiceProcesses(migrated, tmp_path_factory.mktemp("service-logs"))
    processes.start()
    try:
        yield processes
    finally:
        processes.stop_all()


@pytest.fixture(scope="module")
def auditor_token(token: TokenFactory) -> str:
    return token("auditor")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client
