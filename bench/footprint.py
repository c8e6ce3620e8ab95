"""What a county must provision: each service's memory, the disk its database takes per
1,000 tips, and the CPU each process spends per tip — measured at rest and after a run, so
that growth, not the empty schema, is what is reported."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil

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


def cpu_seconds(pids: Mapping[str, list[int]]) -> dict[str, float]:
    """CPU time (user + system) each named group of processes has used so far: the processes,
    their live children (PostgreSQL's backends) and the children they have reaped."""
    used: dict[str, float] = {}
    for name, group in pids.items():
        used[name] = 0.0
        for pid in group:
            process = psutil.Process(pid)
            with process.oneshot():
                times = process.cpu_times()
                children = process.children(recursive=True)
            used[name] += times.user + times.system + times.children_user + times.children_system
            for child in children:
                try:
                    child_times = child.cpu_times()
                except psutil.NoSuchProcess:
                    continue  # gone between the listing and the reading: its parent counts it
                used[name] += child_times.user + child_times.system
    return used


def own_cpu_seconds() -> float:
    """CPU time this process (the benchmark's client) has used, its children left out."""
    times = psutil.Process().cpu_times()
    return times.user + times.system


def cpu_per_tip(
    before: Mapping[str, float], after: Mapping[str, float], tips: int
) -> dict[str, float]:
    """Milliseconds of CPU each group spent per tip between two readings of ``cpu_seconds``."""
    return {name: (after[name] - before[name]) * 1000 / tips for name in after}


def cpu_bound_rate(per_tip_ms: Mapping[str, float], cores: int) -> float:
    """The most tips per second ``cores`` could carry at that CPU per tip, every core busy
    with nothing else: the ceiling the machine itself sets, whatever the design."""
    return cores * 1000 / sum(per_tip_ms.values())


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
