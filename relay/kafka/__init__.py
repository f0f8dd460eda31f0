"""The Kafka seam: the only package that imports aiokafka.

Everything the relay does with Kafka goes through here: the producer, the group
consumer, reading outside a group, topic administration, and the client settings
(security, compression). Errors come out as the relay's own (``relay.errors``).
Each interface has an in-memory fake, and a contract test runs the same checks on
the fake and on a real broker.

    producer.py   ``Producer``, ``KafkaProducer``, ``Record``: ingest's writes (acks=all)
    consumer.py   ``Consumer``, ``KafkaConsumer``: the forwarders' group member
    memory.py     ``MemoryProducer``, ``MemoryLog``, ``MemoryConsumer``: the fakes
    reader.py     ``Reader``: partitions read outside any group (facts, DLQ, backlog)
    writer.py     ``Writer``: plain writes off ingest's path (facts, DLQ replay, tools)
    admin.py      ``Admin``, ``partition_counts``: brokers, topics, their configs
    options.py    ``client_options``, ``producer_options``: every client's settings
    levels.py     ``use_kafka_levels``: lz4 and gzip batches at Kafka's own levels
    access.py     ``check_access``, ``translate``: a refused connection explained

tests/test_kafka_seam.py fails when code elsewhere imports aiokafka.
"""
