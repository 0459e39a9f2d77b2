"""Shared fixtures. Each real service has its own fixture module under tests/fixtures/.

Service fixtures use testcontainers where a Docker engine exists and fall back to
the embedded services (Apache Kafka, or Tansu without Java; local tritonserver; chDB) where it does not; an
endpoint given in the environment (FRAMESTREAM_KAFKA_BOOTSTRAP_SERVERS,
FRAMESTREAM_TRITON_URL, FRAMESTREAM_CLICKHOUSE_DSN) is used as is.
"""

pytest_plugins = [
    "tests.fixtures.broker",
    "tests.fixtures.triton",
    "tests.fixtures.clickhouse",
    "tests.fixtures.mqtt",
]
