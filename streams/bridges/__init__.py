"""Bridges: ``vision.alerts.v1`` to consumers that do not speak Kafka (MQTT, webhooks).

Each bridge is one consumer group reading the alerts topic at least once: an alert's offset
is stored for commit only after the other side acknowledged it (an MQTT PUBACK, a 2xx
answer). A restart or a retry can therefore deliver an alert twice; every delivery carries
the alert id, which stays the same across replays, for the receiver to deduplicate.
"""
