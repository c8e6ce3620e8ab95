"""Kafka clients configured the one way every service uses them, and topic creation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.cluster import ClusterMetadata
from aiokafka.errors import OffsetOutOfRangeError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

TOPIC_ALREADY_EXISTS = TopicAlreadyExistsError.errno

SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


@dataclass(frozen=True)
class BrokerAuth:
    """Who a client is to the broker: a SASL principal (one per service, one per department,
    each allowed only its topics by the broker's ACLs), over TLS or not. The default asks
    nothing, for a broker that asks nothing (the embedded one, on loopback)."""

    mechanism: SaslMechanism | None = None
    username: str | None = None
    password: str | None = None
    tls: bool = False
    cafile: Path | None = None

    def client_options(self) -> dict[str, Any]:
        """The keyword arguments every aiokafka client takes for this."""
        options: dict[str, Any] = {}
        if self.tls:
            options["ssl_context"] = create_ssl_context(
                cafile=str(self.cafile) if self.cafile else None
            )
        if self.mechanism is None:
            if self.tls:
                options["security_protocol"] = "SSL"
            return options
        if not self.username or not self.password:
            raise ValueError(f"SASL {self.mechanism} needs a user name and a password")
        options.update(
            security_protocol="SASL_SSL" if self.tls else "SASL_PLAINTEXT",
            sasl_mechanism=self.mechanism,
            sasl_plain_username=self.username,
            sasl_plain_password=self.password,
        )
        return options


NO_AUTH = BrokerAuth()


def create_producer(
    bootstrap: str, *, client_id: str, enable_idempotence: bool, auth: BrokerAuth = NO_AUTH
) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=enable_idempotence,
        linger_ms=5,
        **auth.client_options(),
    )


async def ensure_topics(
    bootstrap: str,
    names: list[str],
    *,
    partitions: int = 3,
    replication_factor: int = 1,
    auth: BrokerAuth = NO_AUTH,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="whistle-admin", **auth.client_options()
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [
                NewTopic(n, num_partitions=partitions, replication_factor=replication_factor)
                for n in missing
            ]
        )
        failed = [
            f"{name}: {message or code}"
            for name, code, message in response.topic_errors
            if code not in (0, TOPIC_ALREADY_EXISTS)
        ]
        if failed:
            raise RuntimeError("could not create topics: " + "; ".join(failed))
        return missing
    finally:
        await admin.close()


class BrokerLogs:
    """Reads what the broker holds now, without joining a consumer group: the end of each
    partition's log and single records. The outbox relay and the inbox consumer use it to
    notice that the broker lost events it had acknowledged."""

    def __init__(self, bootstrap: str, *, client_id: str, auth: BrokerAuth = NO_AUTH) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="none",
            **auth.client_options(),
        )
        # The topics the broker listed last, when, and the connections the listing came over.
        self._listed: set[str] = set()
        self._listed_at = -math.inf
        self._listed_over: tuple[tuple[Any, Any], ...] = ()

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def ends(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int | None]:
        """Each partition's log-end offset; None for a partition its topic no longer has. A
        topic missing from the broker's metadata is left out: a broker that is restarting or
        a topic not yet recreated is no evidence of what its log holds."""
        cluster = await self._metadata()
        ends: dict[TopicPartition, int | None] = {}
        present = []
        for tp in partitions:
            has = cluster.partitions_for_topic(tp.topic)
            if not has:
                continue
            if tp.partition in has:
                present.append(tp)
            else:
                ends[tp] = None
        if present:
            ends.update(await self._consumer.end_offsets(sorted(present)))
        return ends

    @contextlib.asynccontextmanager
    async def _reading(self, offsets: Mapping[TopicPartition, int]) -> AsyncIterator[None]:
        """Assigned only while read: an assigned partition is fetched ahead in the background,
        and its topic named in every metadata request, which makes Tansu create a topic it
        lost, racing the producers (``OutboxRelay._topics_missing``)."""
        self._consumer.assign(list(offsets))
        for partition, offset in offsets.items():
            self._consumer.seek(partition, offset)
        try:
            yield
        finally:
            self._consumer.unsubscribe()

    async def missing_topics(self, topics: set[str], *, max_age: float = 0.0) -> set[str]:
        """Those of ``topics`` the broker's metadata does not list: asked afresh, not from a
        client's cache, unless the broker listed them all at most ``max_age`` seconds ago
        over connections that are all still open. A broker restarted empty has closed every
        connection to it, so its loss never hides behind a listing; a topic deleted under a
        running broker shows within ``max_age``. (Asking costs a metadata response of every
        topic, about 2 ms of CPU here and 0.7 ms of the broker's: the outbox relay asks before
        each batch, docs/benchmarks.md.)"""
        fresh = time.monotonic() - self._listed_at <= max_age
        if fresh and topics <= self._listed and self._listing_connected():
            return set()
        await self._metadata()
        return topics - self._listed

    async def _metadata(self) -> ClusterMetadata:
        """Every topic's metadata, asked afresh; kept as the last listing."""
        client = self._consumer._client
        cluster = await client.fetch_all_metadata()
        self._listed = {topic for topic in cluster.topics() if cluster.partitions_for_topic(topic)}
        self._listed_at = time.monotonic()
        self._listed_over = tuple(client._conns.items())
        return cluster

    def _listing_connected(self) -> bool:
        """Whether the connections the last listing came over are all open still."""
        conns = self._consumer._client._conns
        return bool(self._listed_over) and all(
            conns.get(key) is conn and conn.connected() for key, conn in self._listed_over
        )

    async def records_at(
        self, offsets: Mapping[TopicPartition, int], wait: float = 2.0
    ) -> dict[TopicPartition, ConsumerRecord | None]:
        """The record at each partition's offset, or None where the log no longer holds it. A
        partition is left out when that cannot be told: its topic is not in the broker's
        metadata, or nothing came within ``wait`` from a log that is not empty (the broker is
        slow, or the log ends there).

        Fetched rather than judged by the log end: a broker may report an end that lags its
        last batch (Tansu reports that batch's first offset + 1), but an empty log is empty.
        All partitions are read in one assignment, with one reading of the logs' ends: read one
        by one, each cost two metadata responses of every topic (its end's, and the one aiokafka
        asks for when an assignment is dropped), and a consumer checks every partition it
        consumed every few seconds."""
        if not offsets:
            return {}
        ends = await self.ends(set(offsets))
        found: dict[TopicPartition, ConsumerRecord | None] = {
            tp: None for tp in offsets if tp in ends and not ends[tp]
        }
        reading = {tp: offset for tp, offset in offsets.items() if ends.get(tp)}
        if not reading:
            return found
        async with self._reading(reading):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    while pending := [tp for tp in reading if tp not in found]:
                        try:
                            batch = await self._consumer.getmany(*pending, timeout_ms=500)
                        except OffsetOutOfRangeError as exc:
                            found.update(dict.fromkeys(exc.args[0]))
                            continue
                        for tp, records in batch.items():
                            if tp in pending and records:
                                first = records[0]
                                found[tp] = first if first.offset == reading[tp] else None
                                self._consumer.pause(tp)
        silent = {tp for tp in reading if tp not in found}
        if silent:
            # Nothing came: only an empty or missing log is certain (a log end may lag).
            ends = await self.ends(silent)
            found.update({tp: None for tp in silent if tp in ends and not ends[tp]})
        return found

    async def event_ids(self, partition: TopicPartition) -> set[str]:
        """The CloudEvents ids a reader finds on ``partition``, read in order from the start of
        its log as a consumer reads them. Not from where an event was acknowledged: Tansu
        fetches whole batches from the first one at or after the offset asked, so an event in a
        batch that overlaps an earlier one is found there and never by a reader from the start
        (docs/reliability.md)."""
        end = (await self.ends({partition})).get(partition)
        if end is None:
            return set()
        first = (await self._consumer.beginning_offsets([partition]))[partition]
        found: set[str] = set()
        async with self._reading({partition: first}), asyncio.timeout(30):
            while await self._consumer.position(partition) < end:
                batch = await self._consumer.getmany(partition, timeout_ms=500)
                for record in batch.get(partition, []):
                    with contextlib.suppress(ValueError, AttributeError):
                        found.add(json.loads(record.value or b"{}").get("id"))
        return found
