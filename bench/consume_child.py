"""`python -m bench.consume_child BOOTSTRAP TOPIC COUNT`: time one consume in its own process.

End-to-end benches run the consumer in a separate process so it does not share the GIL with
the tunnel thread it measures. Prints one JSON line: seconds taken and the first value (hex).
"""

from __future__ import annotations

import json
import sys
import time
import uuid


def consume(bootstrap: str, topic: str, count: int) -> tuple[float, bytes]:
    """Seconds for confluent-kafka to read `count` records of partition 0 from offset 0."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"bench-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "broker.address.family": "v4",
        "fetch.wait.max.ms": 10,
    })
    first = b""
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        got = 0
        start = time.perf_counter()
        deadline = start + 120
        while got < count:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"consumed {got} of {count} records")
            for message in consumer.consume(10_000, 1.0):
                if message.error():
                    raise KafkaException(message.error())
                if got == 0:
                    first = message.value() or b""
                got += 1
        return time.perf_counter() - start, first
    finally:
        consumer.close()


if __name__ == "__main__":
    seconds, first_value = consume(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    print(json.dumps({"seconds": seconds, "first": first_value.hex()}))
