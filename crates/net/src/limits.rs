//! The process's descriptor limit.

/// Raises the soft descriptor limit to the hard limit (where the platform allows it) and returns
/// the limit in force afterwards; `None` where it cannot be read.
pub fn raise_descriptor_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the descriptor limit");
            rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
        }
    }
}

/// True for "too many open files" (per process or system-wide): the descriptor budget is spent,
/// which is neither a disk problem nor a broken peer.
pub fn is_descriptor_exhaustion(e: &std::io::Error) -> bool {
    // EMFILE (24) and ENFILE (23) on Linux and the BSDs.
    matches!(e.raw_os_error(), Some(23 | 24))
}
