//! Store errors. A full disk and a failed fsync are told apart from other I/O failures because the
//! engines answer them differently: a full disk is the producer's problem (retry later), a failed fsync
//! means the store can no longer promise durability and refuses further writes.

use std::io;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No space left (or the file size limit was reached); nothing was written.
    #[error("disk full: the append was not stored")]
    DiskFull,
    /// The process is out of file descriptors (EMFILE/ENFILE): nothing was written; a retry
    /// works once connections or files are closed. Not a disk problem.
    #[error("too many open files: the append was not stored")]
    TooManyOpenFiles,
    /// An earlier fsync failed; the store accepts no more writes until it is reopened.
    #[error("store is read-only after a failed sync: {0}")]
    Poisoned(String),
    /// The record is larger than what fits in one segment.
    #[error("record of {size} bytes exceeds the maximum of {max}")]
    RecordTooLarge {
        /// Payload size.
        size: usize,
        /// The largest payload a segment can hold.
        max: usize,
    },
    /// The store was closed.
    #[error("store is closed")]
    Closed,
    /// Another process holds the store's folder.
    #[error("the store folder is locked by another process")]
    Locked,
    /// The metadata database failed.
    #[error("metadata: {0}")]
    Meta(String),
    /// Any other I/O failure, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl StoreError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        if is_disk_full(&source) {
            return StoreError::DiskFull;
        }
        // EMFILE (24) and ENFILE (23).
        if matches!(source.raw_os_error(), Some(23 | 24)) {
            return StoreError::TooManyOpenFiles;
        }
        StoreError::Io {
            context: context.into(),
            source,
        }
    }
}

/// ENOSPC, EDQUOT and EFBIG (the file size limit) all mean "no room for these bytes".
pub(crate) fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::FileTooLarge | io::ErrorKind::QuotaExceeded
    )
}

/// Result with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
