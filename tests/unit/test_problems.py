"""Which failures are an unavailable dependency (503, retry later) rather than a bug (500)."""

from __future__ import annotations

import errno

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from services.runtime.problems import is_unavailable, is_unstorable_text


def _wrapped(driver_error: Exception) -> DBAPIError:
    """As SQLAlchemy raises a driver's error: wrapped, and raised from it."""
    try:
        try:
            raise driver_error
        except Exception as exc:
            raise DBAPIError("INSERT …", {}, exc) from exc
    except DBAPIError as wrapped:
        return wrapped


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"),
        TimeoutError(),
        OSError(errno.ENOSPC, "No space left on device"),
        PoolTimeout("QueuePool limit of size 10 overflow 10 reached"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        _wrapped(asyncpg.exceptions.DiskFullError("could not extend file")),
        _wrapped(asyncpg.exceptions.AdminShutdownError("terminating connection")),
        _wrapped(asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")),
    ],
    ids=lambda error: type(error).__name__,
)
def test_an_unreachable_stopped_or_full_database_is_unavailable(error: Exception) -> None:
    assert is_unavailable(error)


@pytest.mark.parametrize(
    "error",
    [
        FileNotFoundError(errno.ENOENT, "No such file or directory"),
        ValueError("a bug"),
        _wrapped(asyncpg.exceptions.UniqueViolationError("duplicate key")),
        _wrapped(asyncpg.exceptions.UndefinedColumnError("column does not exist")),
        IntegrityError("INSERT …", {}, asyncpg.exceptions.ForeignKeyViolationError("fk")),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_refused_statement_or_a_bug_is_not(error: Exception) -> None:
    assert not is_unavailable(error)


def test_an_error_met_while_handling_an_outage_is_not_that_outage() -> None:
    bug = KeyError("a bug in the handling")
    bug.__context__ = ConnectionRefusedError()  # what Python records, raised in an except
    assert not is_unavailable(bug)


def test_text_postgresql_cannot_hold_is_the_requests_fault_not_an_outage() -> None:
    nul = _wrapped(asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence"))
    assert is_unstorable_text(nul) and not is_unavailable(nul)
    assert not is_unstorable_text(_wrapped(asyncpg.exceptions.UniqueViolationError("dup")))
