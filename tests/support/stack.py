"""Run the four services as real processes against the test session's infrastructure."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from services.launcher.stack import (
    service_environment,
    spawn_service,
    stop_processes,
    wait_ready,
)
from services.runtime.settings import SERVICES, Settings


class ServiceProcesses:
    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.env = service_environment(self.settings)
        self.env["WHISTLE_OUTBOX_POLL_SECONDS"] = "0.05"
        # The KPI gauges a test reads (tests/e2e/test_monitoring.py) count its own tips.
        self.env["WHISTLE_LEDGER_KPI_REFRESH_SECONDS"] = "1"
        for name in (
            "rate_limit_tips_per_address_per_hour",
            "rate_limit_lookups_per_address_per_hour",
            "merge_window_hours",
        ):
            self.env[f"WHISTLE_{name.upper()}"] = str(getattr(settings, name))
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, *services: str) -> None:
        for service in services or SERVICES:
            self.processes[service] = spawn_service(service, self.env, self.logs / f"{service}.log")
        self.wait_ready(*(services or SERVICES))

    def wait_ready(self, *services: str) -> None:
        wait_ready(
            {s: self.settings.url_of(s) for s in services},
            {s: self.processes[s] for s in services},
            timeout=60,
        )

    def kill(self, service: str) -> None:
        """SIGKILL: no graceful shutdown, whatever it was doing is cut off."""
        process = self.processes.pop(service)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self, service: str) -> int:
        process = self.processes.pop(service)
        stop_processes({service: process})
        return process.returncode

    def stop_all(self) -> None:
        stop_processes(self.processes)
        self.processes.clear()

    def log_text(self, service: str) -> str:
        return (self.logs / f"{service}.log").read_text(encoding="utf-8", errors="replace")
