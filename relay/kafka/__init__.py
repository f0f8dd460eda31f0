"""The Kafka seam: the only package that imports aiokafka.

Everything the relay does with Kafka goes through here: the producer, the group
consumer, reading outside a group, topic administration, and the client settings
(security, compression). Errors come out as the relay's own (``relay.errors``).
Each interface has an in-memory fake, and a contract test runs the same checks on
the fake and on a real broker.
"""
