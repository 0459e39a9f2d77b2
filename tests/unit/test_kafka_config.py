"""streams.kafka_config: client configurations per broker profile."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer

from framestream.settings import BrokerProfile, KafkaSettings
from streams.kafka_config import consumer_config, faust_broker_settings, producer_config


def settings(profile: BrokerProfile, servers: str = "127.0.0.1:9092") -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=servers, profile=profile, partitions=6, replication_factor=3)


def test_tansu_producer_sends_one_record_per_batch_in_order_without_idempotence() -> None:
    config = producer_config(settings(BrokerProfile.TANSU), "ingest")
    assert config["batch.num.messages"] == 1
    assert config["acks"] == "all"
    # Tansu forgets producer ids on restart (see streams/kafka_config.py, quirk 4).
    assert config["enable.idempotence"] is False
    assert config["max.in.flight.requests.per.connection"] == 1


def test_kafka_producer_keeps_librdkafka_batching() -> None:
    config = producer_config(settings(BrokerProfile.KAFKA), "ingest")
    assert "batch.num.messages" not in config
    assert config["acks"] == "all" and config["enable.idempotence"] is True
    assert config["partitioner"] == "murmur2_random"


def test_consumers_commit_manually_and_tansu_gets_a_short_session() -> None:
    tansu = consumer_config(settings(BrokerProfile.TANSU), "g")
    kafka = consumer_config(settings(BrokerProfile.KAFKA), "g")
    for config in (tansu, kafka):
        assert config["enable.auto.commit"] is False
        assert config["auto.offset.reset"] == "earliest"
    assert tansu["session.timeout.ms"] == 6000
    assert tansu["heartbeat.interval.ms"] * 3 <= tansu["session.timeout.ms"]
    assert "session.timeout.ms" not in kafka


@pytest.mark.parametrize("profile", list(BrokerProfile))
def test_librdkafka_accepts_every_config(profile: BrokerProfile) -> None:
    # librdkafka validates property names and values at construction.
    Producer(producer_config(settings(profile), "check")).flush(0)
    Consumer(consumer_config(settings(profile), "check")).close()


def test_faust_settings_per_profile() -> None:
    tansu = faust_broker_settings(settings(BrokerProfile.TANSU, "a:1, b:2"))
    kafka = faust_broker_settings(settings(BrokerProfile.KAFKA))
    assert tansu["broker"] == ["kafka://a:1", "kafka://b:2"]
    assert (tansu["topic_partitions"], tansu["topic_replication_factor"]) == (6, 3)
    assert tansu["producer_max_batch_size"] == 1
    assert tansu["broker_session_timeout"] == 6.0
    assert tansu["broker_heartbeat_interval"] < tansu["broker_session_timeout"]
    assert "producer_max_batch_size" not in kafka and "broker_session_timeout" not in kafka


def test_faust_accepts_the_settings() -> None:
    import faust

    app = faust.App("kafka-config-check", **faust_broker_settings(settings(BrokerProfile.TANSU)))
    assert app.conf.producer_max_batch_size == 1
    assert app.conf.broker_session_timeout == 6.0
    assert app.conf.topic_partitions == 6


def test_an_empty_bootstrap_list_says_how_to_fix_it() -> None:
    with pytest.raises(ValueError, match=r"framestream services.*FRAMESTREAM_KAFKA_BOOTSTRAP_SERVERS"):
        producer_config(settings(BrokerProfile.TANSU, " "), "ingest")
