"""framestream: streaming, event-driven computer vision on Kafka, Faust, Triton and ClickHouse."""
