"""Signed tree heads are issued when the ledger starts, every few seconds while the log grows,
and on demand; each is stored, so any head the ledger ever gave out can be fetched again."""

from __future__ import annotations

import asyncio
import logging

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import Gauge

from services.ledger import store
from services.ledger.heads import HeadSigner, TreeHead, load_private_key
from services.runtime.auth import ensure_dev_keys
from services.runtime.clock import Clock
from services.runtime.db import Sessions
from services.runtime.settings import Settings

log = logging.getLogger(__name__)

SIGNED_TREE_SIZE = Gauge(
    "whistle_ledger_signed_tree_size",
    "Tree size of the latest signed tree head (whistle_ledger_tree_size minus this: entries "
    "no signed head covers yet)",
)
SIGNED_HEAD_AGE = Gauge(
    "whistle_ledger_signed_head_age_seconds",
    "Age of the latest signed tree head on the ledger's clock; grows while the log is idle "
    "(no new head without new entries)",
)


def report_head(head: TreeHead, clock: Clock) -> None:
    """Set the signed head's gauges from the latest head known to this process."""
    SIGNED_TREE_SIZE.set(head.tree_size)
    SIGNED_HEAD_AGE.set(max(0.0, (clock() - head.issued_at).total_seconds()))


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The configured key; without one, a development key pair under WHISTLE_HOME, made if
    missing (with its public key alongside, for ``whistle ledger verify``).

    A configured key that is missing stops the ledger: heads signed by a key made up on the
    spot would not verify against the public key auditors were given.
    """
    path = settings.ledger_signing_key_path
    if not path.exists():
        if settings.ledger_signing_key_file is not None:
            raise RuntimeError(f"the ledger signing key {path} does not exist")
        ensure_dev_keys(path, settings.ledger_public_key_path)
    return load_private_key(path.read_bytes())


async def issue(sessions: Sessions, signer: HeadSigner, clock: Clock) -> tuple[TreeHead, bool]:
    """A head for the log as committed now, and whether it is new: if the log has not grown
    since the latest head, that head is the answer."""
    async with sessions() as session, session.begin():
        latest = await store.latest_head(session)
        size, root = await store.current_root(session)
        if latest is not None and latest.tree_size == size:
            return latest, False
        head = signer.sign(size, root, clock())
        if await store.store_head(session, head):
            return head, True
        # Another replica signed this size first; its head is as good as ours.
        stored = await store.head_at(session, size)
        assert stored is not None
        return stored, False


async def issue_periodically(
    sessions: Sessions, signer: HeadSigner, clock: Clock, interval: float, latest: TreeHead
) -> None:
    """Issue a head every ``interval`` while the log grows, from ``latest`` (the head issued
    at start); the gauges age even while no head can be issued."""
    while True:
        await asyncio.sleep(interval)
        try:
            head, new = await issue(sessions, signer, clock)
        except Exception:
            # The database may be away for a while; the next round tries again.
            log.exception("could not issue a tree head")
            report_head(latest, clock)
            continue
        latest = head
        report_head(head, clock)
        if new:
            log.info("signed tree head at size %d", head.tree_size)
