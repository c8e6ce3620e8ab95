"""Transitional: ``bench/ledger.py`` (and so ``python -m bench``) still imports ``ENTRY_COLUMNS``
and ``recording`` from here. The recorder is ``services/ledger/recorder.py`` and the ledger's
subscription ``services/ledger/consumers.py``; delete this module once the bench imports
``ENTRY_COLUMNS`` and ``Recorder`` from the recorder instead."""

from __future__ import annotations

from services.ledger.recorder import ENTRY_COLUMNS, Recorder
from services.runtime.clock import Clock
from services.runtime.inbox import Subscription

__all__ = ["ENTRY_COLUMNS", "recording"]


def recording(clock: Clock) -> Subscription:
    """Every event recorded, as the ledger's subscription does, for a bench that feeds the
    inbox's batches itself (no topics: it never subscribes)."""
    recorder = Recorder(clock)
    return Subscription(topics=(), handlers={}, any_type=recorder, before_commit=recorder.flush)
