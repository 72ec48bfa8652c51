//! Multi-process tests of Sluice with real third-party Kafka clients.
//!
//! The suite lives in `python/` (pytest, driving kcat, confluent-kafka, kafka-python and
//! aiokafka against real `sluice` processes) and runs with `integration-tests/run.sh`, which
//! `scripts/test.sh` calls.
