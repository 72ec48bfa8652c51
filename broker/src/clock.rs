//! The broker's one wall clock. Timestamps (log append time, ISR lag, commit times) come from
//! here; deadlines and timeouts use `tokio::time::Instant`, which tests can pause.

/// Milliseconds since the Unix epoch (0 if the system clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
