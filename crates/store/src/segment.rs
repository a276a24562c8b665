//! Segment files: fixed-size, preallocated (sparse) files named by their id, appended to by the
//! writer and read through a memory map.
//!
//! Reads hand out `Bytes` slices of the map (`Bytes::from_owner`), so a record goes from disk to a
//! socket without being copied into a new buffer. Where copies still happen: an append copies a `&[u8]`
//! payload once into a `Bytes` (callers holding `Bytes` already pay nothing), and the kernel copies
//! from the page cache on `write` — the log never copies in user space otherwise.
#![allow(unsafe_code)]

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use memmap2::Mmap;

const EXT: &str = "seg";

/// Path of segment `id` in `dir`.
pub(crate) fn path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.{EXT}"))
}

/// Segment ids present in `dir`, oldest first.
pub(crate) fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(hex) = name.strip_suffix(".seg") {
            if let Ok(id) = u64::from_str_radix(hex, 16) {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Creates a new segment file of `size` bytes, its blocks allocated up front, and makes its directory
/// entry durable.
///
/// Why allocate instead of a sparse file: a full disk then shows up here, as a clean error when a
/// segment is started, never in the middle of a batch; and reading the unwritten tail through the
/// map never needs a block (on tmpfs, faulting in a hole of a full filesystem is a SIGBUS).
pub(crate) fn create(dir: &Path, id: u64, size: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path(dir, id))?;
    if let Err(e) = allocate(&file, size) {
        let _ = fs::remove_file(path(dir, id));
        return Err(e);
    }
    sync_dir(dir)?;
    Ok(file)
}

/// Gives `file` `size` bytes of allocated blocks (`fallocate`), falling back to a sparse `set_len`
/// on filesystems that cannot preallocate.
pub(crate) fn allocate(file: &File, size: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len =
        libc::off_t::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: plain system call on a file descriptor we own; no memory is passed.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => file.set_len(size),
        _ => Err(err),
    }
}

/// Opens an existing segment for appending.
pub(crate) fn open_rw(dir: &Path, id: u64) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path(dir, id))
}

/// Maps a segment file read-only. The map outlives the file handle and even the file's deletion.
pub(crate) fn map(file: &File) -> io::Result<Bytes> {
    // SAFETY: segment files are private to the store (the folder is locked against other processes);
    // bytes below the writer's tail are never rewritten, and readers only look below the tail.
    let map = unsafe { Mmap::map(file)? };
    Ok(Bytes::from_owner(map))
}

/// Removes a segment file and makes the removal durable.
pub(crate) fn remove(dir: &Path, id: u64) -> io::Result<()> {
    fs::remove_file(path(dir, id))?;
    sync_dir(dir)
}

/// Zeroes everything from `from` to the end of the file without writing data (truncate, then
/// allocate again: this works on a full disk too, since the blocks just freed are taken back).
pub(crate) fn zero_from(file: &File, from: u64, size: u64) -> io::Result<()> {
    file.set_len(from)?;
    allocate(file, size)?;
    file.sync_all()
}

/// fsync on a directory makes created and deleted entries durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
