"""A topic's messages as a consumer sees them, read up to the topic's end offsets: the tests' own
reader (independent of the project's), which stops when it has everything rather than after an idle
timeout."""
from __future__ import annotations

import time


def topic_messages(bootstrap_servers: str, topic: str, committed_only: bool = True, timeout_s: float = 60,
                   **client) -> list:
    """Every message of `topic` from its beginning to its end offsets. committed_only: what a
    read_committed consumer gets (no aborted transaction); else every message sent."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                             isolation_level="read_committed" if committed_only else "read_uncommitted", **client)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert partitions, f"no topic {topic}"
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)   # a read_committed consumer's ends: the last stable offsets
        if committed_only:   # a commit's markers reach the partitions just after commit_transaction returns
            ends = _settled_ends(consumer, partitions, bootstrap_servers, client, time.monotonic() + 30)
        messages, deadline = [], time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"{topic} not read to its end in {timeout_s} s"
            for tp, records in consumer.poll(timeout_ms=500).items():
                messages += [r for r in records if r.offset < ends[tp]]
        return messages
    finally:
        consumer.close()


def _settled_ends(consumer, partitions, bootstrap_servers: str, client: dict, deadline: float) -> dict:
    """The last stable offsets once they reach the high watermarks (no transaction left open), or as they
    are at the deadline (one still open, or aborted later)."""
    from kafka import KafkaConsumer

    every = KafkaConsumer(bootstrap_servers=bootstrap_servers, isolation_level="read_uncommitted", **client)
    try:
        high = every.end_offsets(partitions)
        ends = consumer.end_offsets(partitions)
        while ends != high and time.monotonic() < deadline:
            time.sleep(0.2)
            ends = consumer.end_offsets(partitions)
        return ends
    finally:
        every.close()


def delete_all_records(bootstrap_servers: str, topic: str) -> None:
    """Delete every record the topic holds now (Kafka's DeleteRecords), as its retention would."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers)
    ends = consumer.end_offsets([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
    consumer.close()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    admin.delete_records(ends)
    admin.close()
