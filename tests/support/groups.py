"""A workaround for a bug of the embedded broker (Tansu 0.6), in tests only.

Tansu forgets to drop a group's leader when the leader leaves while the group is re-forming
(``leave`` in its ``Forming`` state removes the member but keeps ``leader``): the next consumer
to join is made a follower of a leader that is gone, its SyncGroup answers
REBALANCE_IN_PROGRESS for ever, and it never gets a partition. A test module that runs two
in-process apps of one service (two intakes in test_wechat.py) stops them one after the other
at its end — the second leaves while the first's leave has the group re-forming — and the next
module's service then hangs at start. Kafka itself drops the leader; a real deployment's
replicas stop minutes apart, not milliseconds.

So in tests, a consumer that stops waits, with a deadline, until every other consumer of its
group still running in this process has taken over all the group's partitions: the group has
re-formed, and whoever leaves next leaves a formed group.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

from services.runtime.inbox import InboxConsumer

REFORM_DEADLINE_SECONDS = 15.0
_running: set[InboxConsumer] = set()


def _owns_every_partition(consumer: InboxConsumer) -> bool:
    kafka = consumer._consumer  # the aiokafka consumer: its assignment is what the broker gave
    wanted = {
        (topic, partition)
        for topic in kafka.subscription()
        for partition in kafka.partitions_for_topic(topic) or ()
    }
    held = {(tp.topic, tp.partition) for tp in kafka.assignment()}
    return bool(wanted) and wanted <= held


async def _await_reformed(stopped: InboxConsumer) -> None:
    others = [c for c in _running if c._group_id == stopped._group_id]
    deadline = time.monotonic() + REFORM_DEADLINE_SECONDS
    while others and not all(_owns_every_partition(c) for c in others):
        if time.monotonic() > deadline:
            return  # a test that stops its only other member itself: nothing to wait for
        await asyncio.sleep(0.05)


@contextmanager
def group_leaves_in_turn() -> Iterator[None]:
    """Patch InboxConsumer's start and stop as the module docstring says, for the duration."""
    start, stop = InboxConsumer.start, InboxConsumer.stop

    async def starting(self: InboxConsumer) -> None:
        await start(self)
        _running.add(self)

    async def stopping(self: InboxConsumer) -> None:
        _running.discard(self)
        await stop(self)
        await _await_reformed(self)

    InboxConsumer.start, InboxConsumer.stop = starting, stopping  # type: ignore[method-assign]
    try:
        yield
    finally:
        InboxConsumer.start, InboxConsumer.stop = start, stop  # type: ignore[method-assign]
