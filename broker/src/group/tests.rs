//! GroupShard tests.
