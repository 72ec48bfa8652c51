//! Thin wrappers over the durability-relevant system calls, each naming its file on error.

use std::fs::File;
use std::path::Path;

use crate::error::{Result, StorageError};

/// Reserves real blocks for `[offset, offset + len)` (not a sparse hole), extending the file.
pub(crate) fn fallocate(file: &File, path: &Path, offset: u64, len: u64) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    // `return` fails as a full disk does (ENOSPC); `return(unsupported)` as a filesystem
    // without fallocate(2) does (EOPNOTSUPP).
    #[cfg(feature = "failpoints")]
    fail::fail_point!("storage::io::fallocate", |arg| {
        let errno = match arg.as_deref() {
            Some("unsupported") => rustix::io::Errno::OPNOTSUPP.raw_os_error(),
            _ => rustix::io::Errno::NOSPC.raw_os_error(),
        };
        Err(StorageError::io(
            path,
            std::io::Error::from_raw_os_error(errno),
        ))
    });
    // A nearly full disk: room for 8 KiB more, not for a preallocation chunk.
    #[cfg(feature = "failpoints")]
    fail::fail_point!("storage::io::fallocate_over_8k", len > 8 * 1024, |_| Err(
        StorageError::io(path, std::io::Error::from_raw_os_error(28))
    ));
    rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), offset, len)
        .map_err(|e| StorageError::io(path, e.into()))
}

/// `statfs` magic numbers of copy-on-write filesystems: btrfs, ZFS, bcachefs.
const COPY_ON_WRITE_FS: [u32; 3] = [0x9123_683E, 0x2FC1_2FC1, 0xCA45_1A4E];

/// True when `file` lives on a copy-on-write filesystem, where `fallocate(2)` does not
/// guarantee the blocks a later write takes (a write may need new ones), so a full disk can
/// fault a write through a mapping (SIGBUS) despite preallocation. Segments there append with
/// `pwrite(2)`, whose `ENOSPC` is an ordinary error.
pub(crate) fn is_copy_on_write(file: &File) -> bool {
    rustix::fs::fstatfs(file).is_ok_and(|s| COPY_ON_WRITE_FS.contains(&(s.f_type as u32)))
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

/// Fills `buf` from `file` at `offset` with `pread(2)`. Every read of a `.log` file goes
/// through here rather than through a mapping: a media error is then this call's `EIO`,
/// which the caller reports, where a fault on a mapped page would be a SIGBUS that kills the
/// whole process.
pub(crate) fn pread(file: &File, path: &Path, buf: &mut [u8], offset: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    // `return` fails as a bad sector does.
    #[cfg(feature = "failpoints")]
    fail::fail_point!("storage::io::pread", |_| Err(StorageError::io(
        path,
        std::io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error())
    )));
    file.read_exact_at(buf, offset)
        .map_err(|e| StorageError::io(path, e))
}

/// The `len` bytes of `file` at `offset`, read with `pread(2)` (see [`pread`]) into a buffer
/// that is not zero-filled first: a fetch reads each byte once, not twice.
pub(crate) fn pread_to_vec(file: &File, path: &Path, len: usize, offset: u64) -> Result<Vec<u8>> {
    #[cfg(feature = "failpoints")]
    fail::fail_point!("storage::io::pread", |_| Err(StorageError::io(
        path,
        std::io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error())
    )));
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let at = offset + buf.len() as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at) {
            Ok(0) => {
                return Err(StorageError::io(
                    path,
                    std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                ))
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(StorageError::io(path, e.into())),
        }
    }
    // The allocation may hold more than asked for, and the last read may have filled it.
    buf.truncate(len);
    Ok(buf)
}
