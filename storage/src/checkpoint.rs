//! Checkpoint files in Kafka's text layout (`version`, `count`, one entry per line), followed
//! by a `crc32 <hex>` line (crc32fast over everything before it) so a torn or flipped byte is
//! detected rather than trusted. Written atomically (temporary file, fsync, rename).

use std::path::Path;

use crate::error::{Result, StorageError};
use crate::io::write_atomic;

const VERSION: &str = "0";

/// Writes `lines` (already formatted entries) as a checkpoint at `path`.
pub(crate) fn write(path: &Path, lines: &[String]) -> Result<()> {
    let mut body = format!("{VERSION}\n{}\n", lines.len());
    for l in lines {
        body.push_str(l);
        body.push('\n');
    }
    let crc = crc32fast::hash(body.as_bytes());
    body.push_str(&format!("crc32 {crc:08x}\n"));
    write_atomic(path, body.as_bytes())
}

/// Reads a checkpoint's entry lines. `Ok(None)` when the file does not exist; an error names
/// the file when it is malformed or its checksum does not match.
pub(crate) fn read(path: &Path) -> Result<Option<Vec<String>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(path, e)),
    };
    let bad = |reason: &str| StorageError::Corrupt {
        path: path.to_path_buf(),
        position: 0,
        reason: reason.to_string(),
    };
    let crc_at = text
        .rfind("crc32 ")
        .ok_or_else(|| bad("missing checksum line"))?;
    let (body, crc_line) = text.split_at(crc_at);
    let hex = crc_line
        .strip_prefix("crc32 ")
        .and_then(|r| r.strip_suffix('\n'))
        .filter(|h| h.len() == 8)
        .ok_or_else(|| bad("bad checksum line"))?;
    let stored = u32::from_str_radix(hex, 16).map_err(|_| bad("bad checksum line"))?;
    if crc32fast::hash(body.as_bytes()) != stored {
        return Err(bad("checksum mismatch"));
    }
    let mut lines = body.lines();
    if lines.next() != Some(VERSION) {
        return Err(bad("unknown version"));
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| bad("bad entry count"))?;
    let entries: Vec<String> = lines.map(str::to_string).collect();
    if entries.len() != count {
        return Err(bad("entry count mismatch"));
    }
    Ok(Some(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_any_flipped_byte_is_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cp");
        let lines = vec!["t 0 42".to_string(), "u 3 7".to_string()];
        write(&path, &lines).expect("write");
        assert_eq!(read(&path).expect("read"), Some(lines));
        let good = std::fs::read(&path).expect("bytes");
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            std::fs::write(&path, &bad).expect("write");
            assert!(read(&path).is_err(), "flip at {i} undetected");
        }
        assert_eq!(read(&dir.path().join("missing")).expect("ok"), None);
    }
}
