//! The outgoing buffer: QoS 1/2 PUBLISH packets from the moment the application hands them over
//! until the broker acknowledges them. It is both the in-flight window (resent with DUP after a
//! reconnect) and the offline buffer (filled while the link is down).
//!
//! Packets are stored encoded, back to back, in one caller-supplied byte slice, so a resend is a
//! plain write of the stored bytes. When a new message does not fit, the oldest messages that were
//! never sent are dropped first (telemetry: the newest reading matters most); messages already on the
//! wire are never dropped, and if they alone fill the buffer the publish fails with `QueueFull`.

use heapless::Deque;

/// Where a stored PUBLISH is in its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Not yet sent on this connection.
    Queued,
    /// Sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Sent,
    /// QoS 2: PUBREC received, PUBREL sent; waiting for PUBCOMP. Only the packet id matters now.
    Released,
}

/// One stored PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Packet identifier.
    pub pkid: u16,
    /// QoS (1 or 2).
    pub qos: u8,
    /// Stage.
    pub stage: Stage,
    /// Where its bytes start in the buffer.
    pub start: usize,
    /// Its length.
    pub len: usize,
}

/// Moves `src` down to start at `dst` (`dst` < `src.start`). A plain forward loop: `copy_within`
/// would link a general `memmove` (650 bytes on Cortex-M) for this one job.
pub(crate) fn shift_down(buf: &mut [u8], src: core::ops::Range<usize>, dst: usize) {
    for (d, s) in (dst..).zip(src) {
        if let (Some(&b), true) = (buf.get(s), d < buf.len()) {
            buf[d] = b;
        }
    }
}

/// The buffer. `N` bounds the number of messages.
pub struct Outgoing<'b, const N: usize> {
    buf: &'b mut [u8],
    used: usize,
    entries: Deque<Entry, N>,
    dropped: u32,
}

impl<'b, const N: usize> Outgoing<'b, N> {
    /// An empty buffer over `buf`.
    pub fn new(buf: &'b mut [u8]) -> Self {
        Outgoing {
            buf,
            used: 0,
            entries: Deque::new(),
            dropped: 0,
        }
    }

    /// Stored messages.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Messages dropped to make room since start.
    pub fn dropped(&self) -> u32 {
        self.dropped
    }

    /// Whether a packet id is in use.
    pub fn uses(&self, pkid: u16) -> bool {
        self.entries.iter().any(|e| e.pkid == pkid)
    }

    /// Messages sent and not yet completely acknowledged.
    pub fn in_flight(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.stage != Stage::Queued)
            .count()
    }

    fn remove_at(&mut self, index: usize) -> Option<Entry> {
        // Deque has no remove(i): rotate the entries before it to the back and pop.
        let len = self.entries.len();
        if index >= len {
            return None;
        }
        let mut removed = None;
        for i in 0..len {
            let e = self.entries.pop_front()?;
            if i == index {
                removed = Some(e);
            } else {
                let _ = self.entries.push_back(e);
            }
        }
        let gone = removed?;
        let end = gone.start + gone.len;
        shift_down(self.buf, end..self.used, gone.start);
        self.used -= gone.len;
        for e in self.entries.iter_mut() {
            if e.start > gone.start {
                e.start -= gone.len;
            }
        }
        Some(gone)
    }

    /// Makes room for `len` bytes and one entry by dropping the oldest queued messages.
    /// `false` if that is not enough.
    fn make_room(&mut self, len: usize) -> bool {
        if len > self.buf.len() {
            return false;
        }
        while self.buf.len() - self.used < len || self.entries.is_full() {
            let Some(i) = self.entries.iter().position(|e| e.stage == Stage::Queued) else {
                return false;
            };
            self.remove_at(i);
            self.dropped += 1;
        }
        true
    }

    /// Stores a packet written by `write` into a slot of `len` bytes.
    pub fn push(
        &mut self,
        pkid: u16,
        qos: u8,
        len: usize,
        write: impl FnOnce(&mut [u8]) -> usize,
    ) -> bool {
        if !self.make_room(len) {
            return false;
        }
        let start = self.used;
        let written = write(&mut self.buf[start..start + len]);
        self.used += written;
        self.entries
            .push_back(Entry {
                pkid,
                qos,
                stage: Stage::Queued,
                start,
                len: written,
            })
            .is_ok()
    }

    /// The oldest queued message, if the in-flight window has room.
    pub fn next_queued(&self, window: usize) -> Option<Entry> {
        if self.in_flight() >= window {
            return None;
        }
        self.entries
            .iter()
            .find(|e| e.stage == Stage::Queued)
            .copied()
    }

    /// A stored packet's bytes.
    pub fn bytes(&self, e: &Entry) -> &[u8] {
        &self.buf[e.start..e.start + e.len]
    }

    /// Changes a message's stage; when it goes out again after a reconnect, its DUP flag is set.
    pub fn set_stage(&mut self, pkid: u16, stage: Stage) -> bool {
        match self.entries.iter_mut().find(|e| e.pkid == pkid) {
            Some(e) => {
                e.stage = stage;
                true
            }
            None => false,
        }
    }

    /// Removes an acknowledged message.
    pub fn complete(&mut self, pkid: u16) -> Option<Entry> {
        let i = self.entries.iter().position(|e| e.pkid == pkid)?;
        self.remove_at(i)
    }

    /// After a reconnect: every sent PUBLISH goes out again with DUP set; released QoS 2 messages
    /// keep their stage (their PUBREL is resent). Returns the packet ids whose PUBREL must be resent.
    pub fn requeue(&mut self) -> heapless::Vec<u16, N> {
        let mut rel = heapless::Vec::new();
        for e in self.entries.iter_mut() {
            match e.stage {
                Stage::Sent => {
                    e.stage = Stage::Queued;
                    if let Some(b) = self.buf.get_mut(e.start) {
                        *b |= 0x08;
                    }
                }
                Stage::Released => {
                    let _ = rel.push(e.pkid);
                }
                Stage::Queued => {}
            }
        }
        rel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(o: &mut Outgoing<'_, 4>, pkid: u16, len: usize) -> bool {
        o.push(pkid, 1, len, |b| {
            b.fill(pkid as u8);
            len
        })
    }

    #[test]
    fn oldest_queued_messages_are_dropped_first() {
        let mut buf = [0u8; 10];
        let mut o: Outgoing<'_, 4> = Outgoing::new(&mut buf);
        assert!(push(&mut o, 1, 4));
        assert!(push(&mut o, 2, 4));
        o.set_stage(1, Stage::Sent);
        // 1 is on the wire, so 2 (queued, oldest) is dropped for 3.
        assert!(push(&mut o, 3, 4));
        assert_eq!(o.dropped(), 1);
        assert!(o.uses(1) && !o.uses(2) && o.uses(3));
        let e = o.next_queued(10).unwrap();
        assert_eq!((e.pkid, o.bytes(&e)), (3, &[3u8; 4][..]));
        // Only sent messages left: no room.
        o.set_stage(3, Stage::Sent);
        assert!(!push(&mut o, 4, 4));
        assert!(o.complete(1).is_some());
        assert!(push(&mut o, 4, 4));
        assert_eq!(o.bytes(&o.next_queued(10).unwrap()), &[4u8; 4]);
    }

    #[test]
    fn requeue_sets_dup() {
        let mut buf = [0u8; 16];
        let mut o: Outgoing<'_, 4> = Outgoing::new(&mut buf);
        o.push(1, 1, 2, |b| {
            b.copy_from_slice(&[0x32, 0]);
            2
        });
        o.push(2, 2, 2, |b| {
            b.copy_from_slice(&[0x34, 0]);
            2
        });
        o.set_stage(1, Stage::Sent);
        o.set_stage(2, Stage::Released);
        let rel = o.requeue();
        assert_eq!(&rel[..], &[2]);
        let e = o.next_queued(10).unwrap();
        assert_eq!(o.bytes(&e)[0], 0x3a);
        assert!(push_too_big(&mut o));
    }

    fn push_too_big(o: &mut Outgoing<'_, 4>) -> bool {
        !o.push(9, 1, 100, |_| 100)
    }
}
