//! `sluice-replication`: the controller quorum (openraft), partition replication (ISR) and the
//! cluster metadata image.
//!
//! Not written yet: the crate exists so the workspace has its final shape and its dependency
//! direction (it may use `sluice-storage`, nothing else of ours) is fixed from the start.
