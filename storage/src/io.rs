//! Thin wrappers over the durability-relevant system calls, each naming its file on error.

use std::fs::File;
use std::path::Path;

use crate::error::{Result, StorageError};

/// Reserves real blocks for `[offset, offset + len)` (not a sparse hole), extending the file.
pub(crate) fn fallocate(file: &File, path: &Path, offset: u64, len: u64) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    #[cfg(feature = "failpoints")]
    fail::fail_point!("storage::io::fallocate", |_| Err(StorageError::io(
        path,
        std::io::Error::from_raw_os_error(28)
    )));
    // A nearly full disk: room for 8 KiB more, not for a preallocation chunk.
    #[cfg(feature = "failpoints")]
    fail::fail_point!("storage::io::fallocate_over_8k", len > 8 * 1024, |_| Err(
        StorageError::io(path, std::io::Error::from_raw_os_error(28))
    ));
    rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), offset, len)
        .map_err(|e| StorageError::io(path, e.into()))
}

/// Flushes the file's data (and the metadata needed to read it) to stable storage.
pub(crate) fn fdatasync(file: &File, path: &Path) -> Result<()> {
    rustix::fs::fdatasync(file).map_err(|e| StorageError::io(path, e.into()))
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(|e| StorageError::io(dir, e))?;
    f.sync_all().map_err(|e| StorageError::io(dir, e))
}

/// Writes `data` to `path` atomically: a temporary file, fsync, rename, fsync the directory.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
    f.write_all(data).map_err(|e| StorageError::io(&tmp, e))?;
    f.sync_all().map_err(|e| StorageError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| StorageError::io(path, e))?;
    if let Some(dir) = path.parent() {
        fsync_dir(dir)?;
    }
    Ok(())
}
