//! The metadata store: queue definitions, subscriptions, session state, per-message state. Small
//! values, point reads and writes, atomic multi-key updates, prefix scans.
//!
//! It sits behind [`MetaStore`] so the engine can change; today it is `redb` (see
//! `docs/adr/0001-metadata-store.md` for the measurements that chose it over `sled`).

use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition, TableError};

use crate::{Result, StoreError};

/// One owned metadata change: `(table, key, Some(value))` puts, `None` deletes.
pub type MetaChange = (&'static str, Vec<u8>, Option<Vec<u8>>);

/// One change in an atomic [`MetaStore::apply`].
#[derive(Debug, Clone, Copy)]
pub enum MetaOp<'a> {
    /// Insert or replace.
    Put {
        /// Table name.
        table: &'static str,
        /// Key.
        key: &'a [u8],
        /// Value.
        value: &'a [u8],
    },
    /// Remove (absent keys are fine).
    Delete {
        /// Table name.
        table: &'static str,
        /// Key.
        key: &'a [u8],
    },
}

/// A transactional key-value store for metadata.
pub trait MetaStore: Send + Sync {
    /// The value of `key`, if any.
    fn get(&self, table: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// All entries whose key starts with `prefix`, in key order.
    fn scan(&self, table: &'static str, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Applies all operations atomically and durably (fsync) before returning.
    fn apply(&self, ops: &[MetaOp<'_>]) -> Result<()>;
}

fn meta_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Meta(e.to_string())
}

/// [`MetaStore`] on a `redb` database file.
pub struct RedbMeta {
    db: Database,
}

impl RedbMeta {
    /// Opens or creates the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path).map_err(meta_err)?;
        Ok(RedbMeta { db })
    }
}

fn def(table: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(table)
}

impl MetaStore for RedbMeta {
    fn get(&self, table: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read().map_err(meta_err)?;
        let t = match txn.open_table(def(table)) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(meta_err(e)),
        };
        Ok(t.get(key).map_err(meta_err)?.map(|v| v.value().to_vec()))
    }

    fn scan(&self, table: &'static str, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let txn = self.db.begin_read().map_err(meta_err)?;
        let t = match txn.open_table(def(table)) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(meta_err(e)),
        };
        let mut out = Vec::new();
        for entry in t.range::<&[u8]>(prefix..).map_err(meta_err)? {
            let (k, v) = entry.map_err(meta_err)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn apply(&self, ops: &[MetaOp<'_>]) -> Result<()> {
        let txn = self.db.begin_write().map_err(meta_err)?;
        for op in ops {
            match *op {
                MetaOp::Put { table, key, value } => {
                    let mut t = txn.open_table(def(table)).map_err(meta_err)?;
                    t.insert(key, value).map_err(meta_err)?;
                }
                MetaOp::Delete { table, key } => {
                    let mut t = txn.open_table(def(table)).map_err(meta_err)?;
                    t.remove(key).map_err(meta_err)?;
                }
            }
        }
        txn.commit().map_err(meta_err)
    }
}
