"""Prometheus beside the stack (``whistle up --monitoring``): Debian's ``prometheus`` package,
scraping the four services on this machine with the shipped alert rules
(``deploy/prometheus/rules``), so a county on one machine has alerting without containers.

The scrape configuration is the shipped one's (``deploy/prometheus/prometheus.yml``, made for
Compose's host names) with this machine's addresses; ``tests/e2e/test_monitoring.py`` runs it
against a loaded stack and evaluates every dashboard query and alert through its API.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from services.launcher.embedded import (
    EmbeddedError,
    die_with_parent,
    poll_until_ready,
    stop_process,
)
from services.runtime.auth import issue_token
from services.runtime.settings import SERVICES, Settings


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


# Renewed well within WHISTLE_JWT_MAX_LIFETIME_HOURS: Prometheus reads the file at each scrape.
KPI_TOKEN_LIFETIME = timedelta(hours=12)
KPI_TOKEN_RENEW_EVERY = timedelta(hours=1)


def write_kpi_token(settings: Settings, path: Path, now: datetime) -> None:
    """A county supervisor's token for the ledger alone, which may read /v1/kpis/metrics."""
    token = issue_token(
        settings.private_key_path.read_bytes(),
        subject="prometheus",
        roles=["county_supervisor"],
        scopes=[],
        issuer=settings.jwt_issuer,
        audience=settings.audience_of("ledger"),
        now=now,
        lifetime=KPI_TOKEN_LIFETIME,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token)
    path.chmod(0o600)


def scrape_config(
    settings: Settings,
    *,
    rules: Path,
    kpi_token: Path | None = None,
    scrape_seconds: float = 15.0,
    port: int | None = None,
    replicas: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, Any]:
    """What Prometheus reads: the services at their addresses here, labelled ``app`` as in
    Compose (Whistle's own series carry ``service``), every ``*.rules.yml`` in ``rules``, and,
    given a token file, the ledger's KPI gauges (``/v1/kpis/metrics`` asks for a token)."""
    interval = f"{scrape_seconds:g}s"
    kpis = []
    if kpi_token is not None:
        kpis.append(
            {
                "job_name": "whistle-kpis",
                "metrics_path": "/v1/kpis/metrics",
                "authorization": {"credentials_file": str(kpi_token.absolute())},
                "static_configs": [
                    {
                        "targets": [f"{settings.host}:{settings.port_of('ledger')}"],
                        "labels": {"app": "ledger"},
                    }
                ],
            }
        )
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rules.absolute() / "*.rules.yml")],
        "scrape_configs": [
            {
                "job_name": "whistle",
                "metrics_path": "/metrics",
                "static_configs": [
                    {
                        # Each replica on its own port: through the round robin, one scrape
                        # would read one replica's counters and the next another's.
                        "targets": [
                            f"{settings.host}:{port}"
                            for port in (replicas or {}).get(service, [settings.port_of(service)])
                        ],
                        "labels": {"app": service},
                    }
                    for service in SERVICES
                ],
            },
            *kpis,
            {
                "job_name": "prometheus",
                "static_configs": [
                    {"targets": [f"{settings.host}:{port or settings.prometheus_port}"]}
                ],
            },
        ],
    }


class EmbeddedPrometheus:
    """A Prometheus server on ``host:port`` with its configuration and data under ``home``."""

    def __init__(self, home: Path, host: str, port: int, config: dict[str, Any]) -> None:
        self.home = home
        self.host = host
        self.port = port
        self.config = config
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "prometheus.log"

    def start(self, timeout: float = 30) -> str:
        binary = prometheus_binary()
        if binary is None:
            raise EmbeddedError("Prometheus is not installed (Debian: apt-get install prometheus)")
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config, sort_keys=False))
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.home / 'data'}",
                    f"--web.listen-address={self.host}:{self.port}",
                    "--storage.tsdb.retention.time=15d",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        exited = f"Prometheus exited early; see {self.log_path}"
        if poll_until_ready(self._process, self._ready, timeout, exited=exited):
            return self.url
        self.stop()
        raise EmbeddedError(f"Prometheus was not ready within {timeout:.0f}s")

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout: float = 10) -> None:
        stop_process(self._process, signal.SIGTERM, timeout)
        self._process = None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._process
