"""Kafka clients configured the one way every service uses them, and topic creation."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

TOPIC_ALREADY_EXISTS = TopicAlreadyExistsError.errno


def create_producer(
    bootstrap: str, *, client_id: str, enable_idempotence: bool
) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=enable_idempotence,
        linger_ms=5,
    )


async def ensure_topics(
    bootstrap: str, names: list[str], *, partitions: int = 3, replication_factor: int = 1
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="whistle-admin")
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
