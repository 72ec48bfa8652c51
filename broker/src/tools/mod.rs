//! Command-line tools of the `sluice` binary other than `broker`.

pub mod bench;
