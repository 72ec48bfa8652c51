//! Raft RPCs between controller nodes (placeholder, filled in next).
