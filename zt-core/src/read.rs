//! The one way zt reads a file it was pointed at (credentials, bundles, policies):
//! bounded in size, and never blocking on what is not a regular file.

use std::io::Read;
use std::path::Path;

use crate::error::{FileError, FileErrorKind};

/// Reads the file at `path`, refusing one larger than `limit` bytes, a directory,
/// or anything that is not a regular file (a FIFO would block the reader forever,
/// a device could be endless), without reading it.
///
/// The file is opened without blocking (`O_NONBLOCK`: opening a FIFO for reading
/// otherwise waits for a writer) and its type checked on the opened descriptor, so
/// swapping the path between a check and the open changes nothing.
pub(crate) fn read_bounded(path: &Path, limit: usize) -> Result<Vec<u8>, FileError> {
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    let io_error = |err| FileError::io(path, err);
    let file = open_nonblocking(path).map_err(io_error)?;
    let meta = file.metadata().map_err(io_error)?;
    if meta.is_dir() {
        return Err(FileError::new(path, FileErrorKind::IsDirectory));
    }
    if !meta.is_file() {
        return Err(FileError::new(path, FileErrorKind::NotAFile));
    }
    if meta.len() > limit {
        return Err(FileError::new(
            path,
            FileErrorKind::TooLarge {
                size: meta.len(),
                limit,
            },
        ));
    }
    let mut data = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // One byte past the limit tells "too large" from "exactly at the limit" without
    // trusting the size the file reported.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(io_error)?;
    let read = u64::try_from(data.len()).unwrap_or(u64::MAX);
    if read > limit {
        return Err(FileError::new(
            path,
            FileErrorKind::TooLarge {
                size: read.max(meta.len()),
                limit,
            },
        ));
    }
    Ok(data)
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}
