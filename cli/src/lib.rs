//! `sluice-cli`: the `sluice` command. `sluice broker` runs a broker through the
//! `sluice-broker` library; the other subcommands are tools on `sluice-client` that work
//! against any Kafka-compatible cluster and take the flag names of Kafka's own scripts.

pub mod tools;
