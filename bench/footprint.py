"""What a county must provision: each service's memory, and the disk its database takes per
1,000 tips — measured at rest and after a run, so that growth, not the empty schema, is what
is reported."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from services.runtime.settings import SERVICES, Settings

# Every table and its indexes and TOAST, in the service's own schema.
TABLE_SIZES = """
SELECT c.relname, pg_total_relation_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname = 'public'
"""


def rss_bytes(pid: int) -> int:
    """The process's resident set (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"no VmRSS for process {pid}")


def memory(pids: Mapping[str, int]) -> dict[str, int]:
    return {service: rss_bytes(pid) for service, pid in pids.items()}


async def _table_sizes(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return {name: size for name, size in await conn.fetch(TABLE_SIZES)}
    finally:
        await conn.close()


@dataclass(frozen=True)
class Disk:
    """Bytes per table of each service's database."""

    tables: dict[str, dict[str, int]]

    def total(self, service: str) -> int:
        return sum(self.tables[service].values())


def disk(settings: Settings) -> Disk:
    async def read() -> dict[str, dict[str, int]]:
        sizes = await asyncio.gather(
            *(_table_sizes(settings.database_url_for(s)) for s in SERVICES)
        )
        return dict(zip(SERVICES, sizes, strict=True))

    return Disk(asyncio.run(read()))


def growth_per_thousand(before: Disk, after: Disk, service: str, tips: int) -> float:
    """Bytes the service's database grew by per 1,000 tips."""
    return (after.total(service) - before.total(service)) * 1000 / tips


def largest_growth(before: Disk, after: Disk, service: str, count: int = 3) -> list[str]:
    grown = {
        table: size - before.tables[service].get(table, 0)
        for table, size in after.tables[service].items()
    }
    return sorted(grown, key=lambda t: -grown[t])[:count]
