//! A file system that forgets what was not synced, to test durability against a power cut (the
//! idea of Jepsen's LazyFS), mounted with FUSE (the `fuser` crate; Debian's `fuse3` provides
//! `fusermount3`).
//!
//! `kill -9` keeps the page cache: a write never fsynced is still there after the restart, so a
//! missing `fsync`/`fdatasync` cannot show. Here every file has two states, what processes see
//! (`now`) and what a power cut leaves (`synced`): `fsync`/`fdatasync` of a file copies its written
//! ranges and its size into `synced`; `fsync` of a directory makes its entries (creates, renames,
//! unlinks) durable. [`LazyFs::power_cut`] throws away everything else: files and names created
//! since their directory's last sync vanish, unlinked ones come back, and data goes back to the
//! last sync of its file (optionally with the first unsynced page torn, half old, half new).
//!
//! Directory entries follow POSIX strictly: a new file's name survives only once its directory
//! is synced (ext4 often makes it durable with the file's own fsync; other file systems do not).
//!
//! Everything is held in memory: the data folders of the tests are small.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

/// Attributes and names are never cached by the kernel: after a power cut it must ask again.
const TTL: Duration = Duration::ZERO;
const PAGE: usize = 4096;

/// Byte ranges written since the last sync.
type Dirty = Vec<(usize, usize)>;

#[derive(Debug, Clone)]
enum Body {
    File {
        now: Vec<u8>,
        synced: Vec<u8>,
        /// Byte ranges written since the last sync (merged lazily).
        dirty: Vec<(usize, usize)>,
    },
    Dir {
        now: BTreeMap<OsString, u64>,
        synced: BTreeMap<OsString, u64>,
    },
}

#[derive(Debug, Clone)]
struct Node {
    body: Body,
    perm: u16,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
}

/// What the file system counts: syncs seen and what cuts threw away.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub file_syncs: u64,
    pub dir_syncs: u64,
    pub cuts: u64,
    /// Unsynced bytes thrown away by cuts.
    pub lost_bytes: u64,
    /// Names thrown away (or brought back) by cuts.
    pub lost_names: u64,
}

#[derive(Debug, Default)]
struct State {
    nodes: HashMap<u64, Node>,
    next: u64,
    counts: Counts,
}

/// The shared state: the mounted file system serves it, the test cuts its power.
#[derive(Debug, Clone, Default)]
pub struct LazyFs {
    state: Arc<Mutex<State>>,
    /// Tear the first unsynced page of each file at a cut (half of it keeps the new bytes).
    pub tear: bool,
}

impl LazyFs {
    pub fn new(tear: bool) -> LazyFs {
        let fs = LazyFs {
            state: Arc::default(),
            tear,
        };
        {
            let mut s = fs.state.lock().unwrap();
            s.next = 2;
            s.nodes.insert(
                1,
                Node {
                    body: Body::Dir {
                        now: BTreeMap::new(),
                        synced: BTreeMap::new(),
                    },
                    perm: 0o755,
                    uid: 0,
                    gid: 0,
                    mtime: SystemTime::now(),
                },
            );
        }
        fs
    }

    /// Mounts at `at`; unmounted when the returned session is dropped.
    pub fn mount(&self, at: &std::path::Path) -> std::io::Result<fuser::BackgroundSession> {
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("lazyfs".into()),
            fuser::MountOption::DefaultPermissions,
        ];
        config.acl = fuser::SessionACL::All;
        config.n_threads = Some(2);
        fuser::spawn_mount(Mounted(self.clone()), at, &config)
    }

    /// The power goes: everything not synced is gone. Call only while no process uses the
    /// file system (the broker was killed and reaped).
    pub fn power_cut(&self) {
        let mut s = self.state.lock().unwrap();
        let tear = self.tear;
        let mut lost_bytes = 0u64;
        let mut lost_names = 0u64;
        for node in s.nodes.values_mut() {
            match &mut node.body {
                Body::File { now, synced, dirty } => {
                    if dirty.is_empty() && now.len() == synced.len() {
                        continue;
                    }
                    lost_bytes += dirty.iter().map(|(a, b)| (b - a) as u64).sum::<u64>();
                    let torn = tear
                        .then(|| dirty.iter().map(|r| r.0).min())
                        .flatten()
                        .filter(|&start| start < now.len());
                    let mut back = synced.clone();
                    if let Some(start) = torn {
                        // Half of the first unsynced page made it to the platter.
                        let page = start / PAGE * PAGE;
                        let end = (page + PAGE / 2).min(now.len()).max(start);
                        if back.len() < end {
                            back.resize(end, 0);
                        }
                        back[start..end].copy_from_slice(&now[start..end]);
                    }
                    *now = back;
                    dirty.clear();
                }
                Body::Dir { now, synced } => {
                    if now != synced {
                        lost_names += now
                            .iter()
                            .filter(|(k, v)| synced.get(*k) != Some(v))
                            .count() as u64;
                        lost_names +=
                            synced.keys().filter(|k| !now.contains_key(*k)).count() as u64;
                        *now = synced.clone();
                    }
                }
            }
        }
        // Nodes no name reaches any more are gone.
        let mut reachable = std::collections::HashSet::from([1u64]);
        let mut stack = vec![1u64];
        while let Some(n) = stack.pop() {
            if let Some(Node {
                body: Body::Dir { now, .. },
                ..
            }) = s.nodes.get(&n)
            {
                for child in now.values() {
                    if reachable.insert(*child) {
                        stack.push(*child);
                    }
                }
            }
        }
        s.nodes.retain(|k, _| reachable.contains(k));
        s.counts.cuts += 1;
        s.counts.lost_bytes += lost_bytes;
        s.counts.lost_names += lost_names;
    }

    pub fn counts(&self) -> Counts {
        self.state.lock().unwrap().counts
    }
}

struct Mounted(LazyFs);

fn attr(ino: u64, n: &Node) -> FileAttr {
    let (kind, size, nlink) = match &n.body {
        Body::File { now, .. } => (FileType::RegularFile, now.len() as u64, 1),
        Body::Dir { .. } => (FileType::Directory, 4096, 2),
    };
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: n.mtime,
        mtime: n.mtime,
        ctime: n.mtime,
        crtime: n.mtime,
        kind,
        perm: n.perm,
        nlink,
        uid: n.uid,
        gid: n.gid,
        rdev: 0,
        blksize: PAGE as u32,
        flags: 0,
    }
}

impl State {
    fn entries(&mut self, dir: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match self.nodes.get_mut(&dir).map(|n| &mut n.body) {
            Some(Body::Dir { now, .. }) => Ok(now),
            Some(_) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn add(&mut self, parent: u64, name: &OsStr, body: Body, mode: u32) -> Result<FileAttr, Errno> {
        if self.entries(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next;
        self.next += 1;
        let node = Node {
            body,
            perm: (mode & 0o7777) as u16,
            // The harness and the broker run as root.
            uid: 0,
            gid: 0,
            mtime: SystemTime::now(),
        };
        let a = attr(ino, &node);
        self.nodes.insert(ino, node);
        self.entries(parent)?.insert(name.to_owned(), ino);
        Ok(a)
    }

    /// A file's bytes as processes see them, and its unsynced ranges.
    fn file(&mut self, ino: u64) -> Result<(&mut Vec<u8>, &mut Dirty), Errno> {
        match self.nodes.get_mut(&ino).map(|n| &mut n.body) {
            Some(Body::File { now, dirty, .. }) => Ok((now, dirty)),
            Some(_) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }
}

/// Marks `[start, end)` written; ranges are merged when the list grows.
fn mark(dirty: &mut Vec<(usize, usize)>, start: usize, end: usize) {
    if start >= end {
        return;
    }
    if let Some(last) = dirty.last_mut() {
        if start <= last.1 && end >= last.0 {
            *last = (last.0.min(start), last.1.max(end));
            return;
        }
    }
    dirty.push((start, end));
    if dirty.len() > 256 {
        dirty.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(dirty.len());
        for &(a, b) in dirty.iter() {
            match merged.last_mut() {
                Some(m) if a <= m.1 => m.1 = m.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        *dirty = merged;
    }
}

impl Filesystem for Mounted {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut s = self.0.state.lock().unwrap();
        let ino = match s.entries(parent.0) {
            Ok(e) => e.get(name).copied(),
            Err(e) => return reply.error(e),
        };
        match ino.and_then(|i| s.nodes.get(&i).map(|n| attr(i, n))) {
            Some(a) => reply.entry(&TTL, &a, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let s = self.0.state.lock().unwrap();
        match s.nodes.get(&ino.0) {
            Some(n) => reply.attr(&TTL, &attr(ino.0, n)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut s = self.0.state.lock().unwrap();
        if let Some(size) = size {
            match s.file(ino.0) {
                Ok((now, dirty)) => {
                    let size = size as usize;
                    let old = now.len();
                    now.resize(size, 0);
                    // A size change is unsynced like data (the cut restores the synced size).
                    mark(dirty, old.min(size), old.max(size));
                }
                Err(e) => return reply.error(e),
            }
        }
        let Some(n) = s.nodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if let Some(m) = mode {
            n.perm = (m & 0o7777) as u16;
        }
        if let Some(u) = uid {
            n.uid = u;
        }
        if let Some(g) = gid {
            n.gid = g;
        }
        n.mtime = SystemTime::now();
        reply.attr(&TTL, &attr(ino.0, n));
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut s = self.0.state.lock().unwrap();
        let body = Body::Dir {
            now: BTreeMap::new(),
            synced: BTreeMap::new(),
        };
        match s.add(parent.0, name, body, mode) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut s = self.0.state.lock().unwrap();
        let body = Body::File {
            now: Vec::new(),
            synced: Vec::new(),
            dirty: Vec::new(),
        };
        match s.add(parent.0, name, body, mode) {
            Ok(a) => reply.created(&TTL, &a, Generation(0), FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.0.state.lock().unwrap();
        match s.entries(parent.0).map(|e| e.remove(name)) {
            Ok(Some(_)) => reply.ok(),
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.0.state.lock().unwrap();
        let Ok(Some(ino)) = s.entries(parent.0).map(|e| e.get(name).copied()) else {
            return reply.error(Errno::ENOENT);
        };
        match s.entries(ino) {
            Ok(e) if !e.is_empty() => return reply.error(Errno::ENOTEMPTY),
            Ok(_) => {}
            Err(e) => return reply.error(e),
        }
        if let Ok(e) = s.entries(parent.0) {
            e.remove(name);
        }
        reply.ok();
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut s = self.0.state.lock().unwrap();
        let ino = match s.entries(parent.0).map(|e| e.remove(name)) {
            Ok(Some(i)) => i,
            Ok(None) => return reply.error(Errno::ENOENT),
            Err(e) => return reply.error(e),
        };
        match s.entries(newparent.0) {
            Ok(e) => {
                e.insert(newname.to_owned(), ino);
                reply.ok();
            }
            Err(e) => {
                if let Ok(back) = s.entries(parent.0) {
                    back.insert(name.to_owned(), ino);
                }
                reply.error(e);
            }
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.0.state.lock().unwrap().nodes.contains_key(&ino.0) {
            reply.opened(FileHandle(0), FopenFlags::empty());
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut s = self.0.state.lock().unwrap();
        match s.file(ino.0) {
            Ok((now, _)) => {
                let start = (offset as usize).min(now.len());
                let end = (start + size as usize).min(now.len());
                reply.data(&now[start..end]);
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut s = self.0.state.lock().unwrap();
        match s.file(ino.0) {
            Ok((now, dirty)) => {
                let start = offset as usize;
                let end = start + data.len();
                let old = now.len();
                if now.len() < end {
                    now.resize(end, 0);
                }
                now[start..end].copy_from_slice(data);
                mark(dirty, start.min(old), end);
                reply.written(data.len() as u32);
            }
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        let mut s = self.0.state.lock().unwrap();
        match s.file(ino.0) {
            Ok((now, dirty)) => {
                let end = (offset + length) as usize;
                if now.len() < end {
                    let old = now.len();
                    now.resize(end, 0);
                    mark(dirty, old, end);
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut s = self.0.state.lock().unwrap();
        s.counts.file_syncs += 1;
        if let Some(Node {
            body: Body::File { now, synced, dirty },
            ..
        }) = s.nodes.get_mut(&ino.0)
        {
            synced.resize(now.len(), 0);
            for (a, b) in dirty.drain(..) {
                let b = b.min(now.len());
                if a < b {
                    synced[a..b].copy_from_slice(&now[a..b]);
                }
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut s = self.0.state.lock().unwrap();
        s.counts.dir_syncs += 1;
        if let Some(Node {
            body: Body::Dir { now, synced },
            ..
        }) = s.nodes.get_mut(&ino.0)
        {
            *synced = now.clone();
        }
        reply.ok();
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let s = self.0.state.lock().unwrap();
        let Some(Node {
            body: Body::Dir { now, .. },
            ..
        }) = s.nodes.get(&ino.0)
        else {
            return reply.error(Errno::ENOTDIR);
        };
        let mut all: Vec<(u64, FileType, OsString)> = vec![
            (ino.0, FileType::Directory, ".".into()),
            (1, FileType::Directory, "..".into()),
        ];
        for (name, child) in now {
            let kind = match s.nodes.get(child).map(|n| &n.body) {
                Some(Body::Dir { .. }) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            all.push((*child, kind, name.clone()));
        }
        for (i, (child, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // 4 GiB, nearly all free: the store's space checks pass.
        reply.statfs(
            1 << 20,
            1 << 20,
            1 << 20,
            1 << 20,
            1 << 20,
            PAGE as u32,
            255,
            PAGE as u32,
        );
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}
