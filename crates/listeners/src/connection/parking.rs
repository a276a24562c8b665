//! Idle MQTT connections kept without a task (issue 29). A connected client that sends nothing
//! and has nothing to receive is most of a gateway's connections, and a tokio task per connection
//! costs ~1.2 KB while it waits (the task with its future, the reactor's registration, the split
//! stream's lock). A TCP connection (bare, or carrying a WebSocket, TLS or both, each at rest:
//! between frames and records) idle for [`IDLE_BEFORE_PARKING`] leaves its task: its state
//! (232 B: the connection's settings, its handle, its socket, rustls's state if it has TLS) waits
//! here, its socket in
//! this lot's own epoll set, as mosquitto's connections wait in its epoll loop. Whichever comes
//! first wakes it onto a new task, where it goes on as it was: bytes from the client (or its
//! end), a wake-up from the engine (a delivery, a takeover, an operator's kick, the shutdown:
//! [`outpost_mqtt::Signals`]), or its keep-alive running out (checked five times a second here;
//! the resumed connection closes it as before). A lone PINGREQ is answered here and the client
//! stays parked (not over TLS: that one is encrypted, and wakes the connection). New TCP
//! connections get their task from this thread, so their tasks live
//! in this thread's allocator arena and their pages go back to the system once they are parked
//! (ADR 0022).
//!
//! Written on `mio` (tokio's own readiness layer) rather than on tokio's reactor: a socket
//! registered with tokio needs a task to wait on it, which is what parking gives up.

use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use outpost_mqtt::{Broker, ConnectionHandle};
use outpost_net::Permit;
use parking_lot::Mutex;

use super::conn::Kept;
use super::session::{keep_alive_grace, PINGREQ};
use super::Connected;
use crate::websocket_bytes::WebSocketBytes;
use outpost_net::TlsBytes;

/// How long a connection is idle before it is parked: a connection that is busy now and then
/// does not move between its task and the lot on every packet.
pub(crate) const IDLE_BEFORE_PARKING: Duration = Duration::from_secs(2);

/// How often parked connections' keep-alives are looked at (a scan of one number each).
const KEEP_ALIVE_CHECK: Duration = Duration::from_millis(200);

/// An idle connection, without its task.
pub(super) struct Parked {
    pub(super) socket: TcpStream,
    pub(super) conn: Kept,
    pub(super) h: ConnectionHandle,
    pub(super) broker: Arc<Broker>,
    pub(super) keep_alive: u16,
    pub(super) max: u32,
    /// It carries a WebSocket (at rest between frames: `WebSocketBytes::at_rest`).
    pub(super) websocket: bool,
    /// Over TLS: rustls's state of the connection (keys, sequence numbers; its buffers were
    /// empty and are gone: `TlsBytes::at_rest`).
    pub(super) tls: Option<Box<outpost_net::TlsSession>>,
    pub(super) permit: Permit,
}

/// The parked connections, and the thread that waits for them.
pub(super) struct Lot {
    registry: Registry,
    /// Interrupts the poll: tasks to start.
    waker: Waker,
    /// Connections to put on tasks, by the lot's thread (see [`Lot::start_task`]).
    starting: Mutex<Vec<NewTask>>,
    /// The clock's origin for [`Slots::expires`].
    epoch: tokio::time::Instant,
    /// Connections parked since start.
    parkings: std::sync::atomic::AtomicU64,
    slots: Mutex<Slots>,
    runtime: tokio::runtime::Handle,
}

#[derive(Default)]
struct Slots {
    parked: Vec<Option<Box<Parked>>>,
    /// Beside each slot, when its keep-alive runs out (milliseconds from the lot's start, `u64::MAX`
    /// for never or an empty slot): what the clock checks, without visiting each connection.
    expires: Vec<u64>,
    free: Vec<u32>,
    count: usize,
}

/// A new TCP connection, bare or carrying TLS, a WebSocket or both, past its handshake, going
/// onto its task.
pub(super) enum NewTask {
    Tcp(Box<Connected<tokio::net::TcpStream>>),
    WebSocket(Box<Connected<WebSocketBytes<tokio::net::TcpStream>>>),
    Tls(Box<Connected<TlsBytes<tokio::net::TcpStream>>>),
    WebSocketTls(Box<Connected<WebSocketBytes<TlsBytes<tokio::net::TcpStream>>>>),
}

/// Whether `bytes` are exactly one PINGREQ: bare, or in a client's binary WebSocket frame
/// (final, masked, two bytes long).
fn is_ping(bytes: &[u8]) -> bool {
    match bytes {
        [a, b] => [*a, *b] == PINGREQ,
        [0x82, 0x82, m0, m1, _, _, a, b] => [a ^ m0, b ^ m1] == PINGREQ,
        _ => false,
    }
}

/// The poll's own wake-up (a parked connection's token is its slot).
const WAKER: Token = Token(usize::MAX);

static LOT: OnceLock<Option<Arc<Lot>>> = OnceLock::new();

/// Parkings between two returns of free memory to the system, and the least time between them.
const TRIM_AFTER: u64 = 256;
const TRIM_EVERY: Duration = Duration::from_secs(2);

/// When free memory was last given back, and the parkings counted then; when the count was last
/// seen to change.
struct Trimmed {
    at: std::time::Instant,
    parkings: u64,
    seen: u64,
    seen_at: std::time::Instant,
}

/// glibc's `malloc_trim`: free pages inside the heap go back to the system (other allocators
/// return them on their own).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: malloc_trim takes no pointer and only releases memory no allocation uses.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

/// The process's parking lot, started on first use from inside the runtime that serves the
/// connections; `None` if it could not start (connections then keep their tasks).
pub(super) fn lot() -> Option<&'static Arc<Lot>> {
    LOT.get_or_init(|| match Lot::start() {
        Ok(lot) => {
            outpost_mqtt::set_unparker(|token| {
                if let Some(Some(lot)) = LOT.get() {
                    lot.unpark(token);
                }
            });
            Some(lot)
        }
        Err(e) => {
            tracing::warn!(error = %e, "idle connections cannot be parked; each keeps its task");
            None
        }
    })
    .as_ref()
}

/// Parked connections now (for tests and the footprint benchmark's log).
pub fn parked_connections() -> usize {
    match LOT.get() {
        Some(Some(lot)) => lot.slots.lock().count,
        _ => 0,
    }
}

impl Lot {
    fn start() -> std::io::Result<Arc<Lot>> {
        let runtime = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let lot = Arc::new(Lot {
            registry,
            waker,
            starting: Mutex::default(),
            epoch: tokio::time::Instant::now(),
            parkings: Default::default(),
            slots: Mutex::default(),
            runtime,
        });
        let waiting = lot.clone();
        std::thread::Builder::new()
            .name("outpost-parked".into())
            .stack_size(64 * 1024)
            .spawn(move || waiting.wait(poll))?;
        Ok(lot)
    }

    /// Parks `p`: its socket joins the lot's poll, then its wake-ups come here. A wake-up that
    /// came while it was being parked resumes it at once.
    /// `expires`: when its keep-alive runs out, if it has one (kept beside the slot, to the
    /// millisecond, not in the box: 16 bytes less per parked connection).
    pub(super) fn park(&self, p: Box<Parked>, expires: Option<tokio::time::Instant>) {
        let signals = p.h.signals.clone();
        let token = {
            let mut slots = self.slots.lock();
            let token = match slots.free.pop() {
                Some(t) => t,
                None => {
                    let Ok(t) = u32::try_from(slots.parked.len()) else {
                        drop(slots);
                        self.resume(p, expires);
                        return;
                    };
                    slots.parked.push(None);
                    slots.expires.push(u64::MAX);
                    t
                }
            };
            let fd = p.socket.as_raw_fd();
            if let Err(e) = self.registry.register(
                &mut SourceFd(&fd),
                Token(token as usize),
                Interest::READABLE,
            ) {
                slots.free.push(token);
                drop(slots);
                tracing::warn!(error = %e, "cannot park an idle connection; it keeps its task");
                self.resume(p, expires);
                return;
            }
            slots.expires[token as usize] = expires.map_or(u64::MAX, |e| self.millis(e));
            slots.parked[token as usize] = Some(p);
            slots.count += 1;
            self.parkings
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            token
        };
        signals.park(token);
        // A wake-up before the token was set found nothing parked: it left its notification.
        use futures_util::FutureExt;
        if signals.notified().now_or_never().is_some() && signals.unpark().is_some() {
            self.unpark(token);
        }
    }

    /// Wakes the connection parked under `token` onto a task of its own (nothing if it already
    /// left).
    pub(super) fn unpark(&self, token: u32) {
        if let Some((p, expires)) = self.take(token) {
            self.resume(p, expires);
        }
    }

    fn take(&self, token: u32) -> Option<(Box<Parked>, Option<tokio::time::Instant>)> {
        let mut slots = self.slots.lock();
        let p = slots.parked.get_mut(token as usize)?.take()?;
        let expires = match slots.expires[token as usize] {
            u64::MAX => None,
            ms => self.epoch.checked_add(Duration::from_millis(ms)),
        };
        let fd = p.socket.as_raw_fd();
        let _ = self.registry.deregister(&mut SourceFd(&fd));
        // Under the lock, before the slot is free for another: a later wake-up of this
        // connection cannot reach the next one parked here.
        p.h.signals.unpark();
        slots.expires[token as usize] = u64::MAX;
        slots.free.push(token);
        slots.count -= 1;
        Some((p, expires))
    }

    fn resume(&self, p: Box<Parked>, expires: Option<tokio::time::Instant>) {
        // On the thread that woke it (the lot's, or the engine's delivering to it): a delivery
        // to a parked client waits for no other thread. Its task is freed on that thread's
        // arena among short-lived allocations, which the trim gives back.
        let _runtime = self.runtime.enter();
        super::resume(p, expires);
    }

    /// Puts a new connection on its task, made by the lot's thread: glibc's allocator gives
    /// each thread an arena of its own, so the tasks of a burst of connections, which end when
    /// they are parked, are made apart from the sessions and subscriptions made in the same
    /// moments, and the pages they leave go back to the system instead of staying as holes
    /// between what lives on.
    pub(super) fn start_task(&self, start: NewTask) {
        let first = {
            let mut starting = self.starting.lock();
            starting.push(start);
            starting.len() == 1
        };
        // One wake-up for a batch (a fan-out wakes thousands of parked subscribers at once).
        if !first {
            return;
        }
        if let Err(e) = self.waker.wake() {
            tracing::error!(error = %e, "the parked connections' poll cannot be woken");
        }
    }

    /// On the lot's thread: the tasks asked for.
    fn start_tasks(&self) {
        let starting = std::mem::take(&mut *self.starting.lock());
        if starting.is_empty() {
            return;
        }
        let _runtime = self.runtime.enter();
        for c in starting {
            match c {
                NewTask::Tcp(c) => tokio::spawn(super::connected(c)),
                NewTask::WebSocket(c) => tokio::spawn(super::connected(c)),
                NewTask::Tls(c) => tokio::spawn(super::connected(c)),
                NewTask::WebSocketTls(c) => tokio::spawn(super::connected(c)),
            };
        }
    }

    /// The lot's thread: sockets that became readable (or closed), and keep-alives that ran
    /// out, go back to tasks.
    fn wait(&self, mut poll: Poll) {
        let mut events = Events::with_capacity(1024);
        let mut checked = std::time::Instant::now();
        let mut trimmed = Trimmed {
            at: checked,
            parkings: 0,
            seen: 0,
            seen_at: checked,
        };
        loop {
            if let Err(e) = poll.poll(&mut events, Some(KEEP_ALIVE_CHECK)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "the parked connections' poll failed");
                    std::thread::sleep(KEEP_ALIVE_CHECK);
                }
                continue;
            }
            for event in events.iter() {
                if event.token() == WAKER {
                    continue;
                }
                if let Ok(token) = u32::try_from(event.token().0) {
                    if !self.answer_ping(token) {
                        self.unpark(token);
                    }
                }
            }
            self.start_tasks();
            if checked.elapsed() >= KEEP_ALIVE_CHECK {
                checked = std::time::Instant::now();
                self.expire();
                self.give_back(&mut trimmed);
            }
        }
    }

    /// Once many connections were parked since the last time, or a burst of parkings is over
    /// (some since the last time, none for [`TRIM_EVERY`]), and not more often than
    /// [`TRIM_EVERY`], the allocator gives its free pages back to the system: the tasks those
    /// connections left, made on this thread's arena (see [`Lot::start_task`]), and the buffers
    /// of their TLS handshakes are mostly whole free pages by then. Without it a burst of
    /// connections kept its peak memory after they all went idle (10,000 connections: 2,260 B
    /// each instead of 1,649); without the trim at the end of a burst, the last parkings' pages
    /// stayed (2,000 TLS connections: 9.4 KB each instead of 2.3 KB).
    fn give_back(&self, trimmed: &mut Trimmed) {
        let parkings = self.parkings.load(std::sync::atomic::Ordering::Relaxed);
        if parkings != trimmed.seen {
            trimmed.seen = parkings;
            trimmed.seen_at = std::time::Instant::now();
        }
        let since = parkings.wrapping_sub(trimmed.parkings);
        let burst_over = since > 0 && trimmed.seen_at.elapsed() >= TRIM_EVERY;
        if !(since >= TRIM_AFTER || burst_over) || trimmed.at.elapsed() < TRIM_EVERY {
            return;
        }
        trimmed.at = std::time::Instant::now();
        trimmed.parkings = parkings;
        trim();
    }

    /// A parked client that sent a PINGREQ and nothing else is answered here, and stays parked
    /// with its keep-alive renewed (§3.1.2.10: a control packet arrived): an idle client's pings
    /// cost three system calls instead of a task and four changes of epoll sets. Anything else
    /// (more bytes, its end, a full send buffer) wakes the connection; false then.
    fn answer_ping(&self, token: u32) -> bool {
        use std::io::{Read, Write};
        let mut slots = self.slots.lock();
        let Some(Some(p)) = slots.parked.get(token as usize) else {
            return false;
        };
        // Over TLS the ping is encrypted: the connection wakes to read it.
        if p.tls.is_some() {
            return false;
        }
        // Over a WebSocket (at rest: between frames), the ping is one masked binary frame of
        // its two bytes, the answer an unmasked one.
        let (request, answer): (usize, &[u8]) = if p.websocket {
            (8, &[0x82, 0x02, 0xD0, 0x00])
        } else {
            (2, &[0xD0, 0x00])
        };
        let mut seen = [0u8; 9];
        if p.socket.peek(&mut seen).ok() != Some(request) || !is_ping(&seen[..request]) {
            return false;
        }
        // The answer first: if it cannot go out whole, the request stays unread and the woken
        // connection answers it.
        if (&p.socket).write(answer).ok() != Some(answer.len()) {
            return false;
        }
        if (&p.socket).read_exact(&mut seen[..request]).is_err() {
            return false;
        }
        if let Some(grace) = keep_alive_grace(p.keep_alive) {
            slots.expires[token as usize] = self.millis(tokio::time::Instant::now() + grace);
        }
        true
    }

    /// Milliseconds from the lot's start to `at`.
    /// (Rounded up: a keep-alive never runs out before its time.)
    fn millis(&self, at: tokio::time::Instant) -> u64 {
        let since = at.saturating_duration_since(self.epoch);
        u64::try_from(since.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX - 1)
    }

    /// Resumes the parked connections whose keep-alive ran out; each closes itself.
    fn expire(&self) {
        let now = self.millis(tokio::time::Instant::now());
        let due: Vec<u32> = {
            let slots = self.slots.lock();
            slots
                .expires
                .iter()
                .enumerate()
                .filter(|(_, e)| **e <= now)
                .filter_map(|(i, _)| u32::try_from(i).ok())
                .collect()
        };
        for token in due {
            self.unpark(token);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pings_are_known_bare_and_in_a_websocket_frame() {
        use super::is_ping;
        assert!(is_ping(&[0xC0, 0x00]));
        assert!(is_ping(&[0x82, 0x82, 0, 0, 0, 0, 0xC0, 0x00]));
        assert!(is_ping(&[0x82, 0x82, 0x0F, 0xF0, 1, 2, 0xCF, 0xF0]));
        assert!(!is_ping(&[0xE0, 0x00]), "a DISCONNECT");
        assert!(
            !is_ping(&[0x02, 0x82, 0, 0, 0, 0, 0xC0, 0x00]),
            "not a final frame"
        );
        assert!(
            !is_ping(&[0x82, 0x02, 0, 0, 0, 0, 0xC0, 0x00]),
            "not masked"
        );
        assert!(
            !is_ping(&[0x81, 0x82, 0, 0, 0, 0, 0xC0, 0x00]),
            "a text frame"
        );
    }

    /// What a parked connection keeps besides its session (issue 29: ≤ 1 KiB per idle
    /// connection in all). A change that widens it fails here.
    #[test]
    fn a_parked_connection_stays_small() {
        let size = std::mem::size_of::<super::Parked>();
        assert!(size <= 232, "a parked connection is {size} B");
    }
}
