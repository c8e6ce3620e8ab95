from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.support.stack import ServiceProcesses


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
