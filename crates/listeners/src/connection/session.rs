//! The connection's loop once connected: reads packets, waits for deliveries, the keep-alive,
//! flow control and shutdown, and writes what is due.

use std::time::Duration;

use bytes::BytesMut;
use outpost_codec::{split_frame, ReasonCode};
use outpost_mqtt::{Broker, Close, ConnectionHandle, Disconnect, Wakes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::Instant;

use super::buffers::{room_to_read, KEEP_ABOVE};
use super::conn::{bypasses_parking, Conn, PARK_LIMIT};
use super::packets::handle;
use super::parking::IDLE_BEFORE_PARKING;
use super::End;

/// The connection's main loop; returns how it ended.
///
/// A plain function returning an `async move` block rather than an `async fn`: an async fn
/// copies each argument into a local of its own beside the argument, and this future is held
/// for as long as the connection is idle.
#[allow(clippy::manual_async_fn)]
pub(super) fn run<'a, R, W>(
    rd: &'a mut R,
    buf: &'a mut BytesMut,
    conn: &'a mut Conn<W>,
    broker: &'a Broker,
    h: &'a ConnectionHandle,
    (keep_alive, max): (u16, u32),
    // Whether the connection may be parked when idle, and when its keep-alive runs out.
    (parks, mut expires): (bool, Option<Instant>),
) -> impl std::future::Future<Output = End> + 'a
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    async move {
        // §3.1.2.10: the server closes a connection silent for one and a half keep-alive periods.
        // (A function, not an `Option<Duration>` kept in the future: 16 bytes in every idle
        // connection.) `expires` is when (a resumed connection's comes with it).
        let grace = || keep_alive_grace(keep_alive);
        if expires.is_none() {
            expires = grace().map(|g| Instant::now() + g);
        }
        // One timer for the keep-alive and, where connections are parked, for parking an idle
        // one: whichever comes first.
        let wake_at = |expires: Option<Instant>| {
            let now = Instant::now();
            let far = now + Duration::from_secs(365 * 24 * 3600);
            let park = if parks {
                now + IDLE_BEFORE_PARKING
            } else {
                far
            };
            expires.unwrap_or(far).min(park)
        };
        let deadline = tokio::time::sleep_until(wake_at(expires));
        tokio::pin!(deadline);
        // Packets that arrived together with CONNECT, then whatever a resumed session has queued.
        if let Err(end) = handle_buffered(buf, conn, broker, h, max as usize) {
            return end;
        }
        loop {
            let flushed = conn.flush_settled().await;
            for pkid in std::mem::take(&mut conn.released) {
                broker.pubrel(h, pkid);
            }
            if flushed.is_err() {
                return End::Close(Disconnect::Abrupt, None);
            }
            if std::mem::take(&mut conn.kept.pressure) {
                tokio::task::yield_now().await;
            }
            // Far behind on disk: stop reading until the store catches up (the client's TCP window
            // fills; nothing is dropped). Boxed, like every wait an idle connection is not in: the
            // task's future is as large as its largest wait, and it is held while idle.
            if broker.persistence_behind() {
                Box::pin(broker.wait_for_persistence()).await;
            }
            // Asked to close (a takeover, a stalled subscriber, an operator, the shutdown): seen
            // here on every round, so a client that keeps the socket busy is closed all the same.
            if let Some(why) = h.signals.closing() {
                return Box::pin(close(why, rd, buf, conn, broker, h, max as usize)).await;
            }
            let hold = match conn.held.as_mut() {
                Some(held) if !held.by.is_empty() => {
                    // Also wakes now and then, so a stalled subscriber is noticed.
                    broker.holding_back(&mut held.by).map(|drained| {
                        Box::pin(tokio::time::timeout(Duration::from_millis(250), drained))
                    })
                }
                _ => None,
            };
            if !conn.held_back() && conn.held.is_some() {
                // Released: what waited is handled now, in order, until something holds it again.
                let mut handled = false;
                let mut wakes = Wakes::new();
                while let Some(frame) = conn.unpark() {
                    handled = true;
                    if let Some(end) = handle(&frame, conn, broker, h, &mut wakes) {
                        return end;
                    }
                    if conn.held_back() {
                        break;
                    }
                }
                wakes.wake_all();
                if handled {
                    let sends = broker.sendable(h);
                    conn.push_sends(broker, h, sends);
                    continue;
                }
            }
            let may_read = (conn.parked_bytes() + buf.len() < PARK_LIMIT || !conn.holding())
                && conn.pending_acks.len() < MAX_PENDING_ACKS;
            if !may_read {
                // The broker stopped reading this client, not the other way round: its keep-alive
                // starts again when reading does.
                if let Some(g) = grace() {
                    expires = Some(Instant::now() + g);
                    deadline.as_mut().reset(wake_at(expires));
                }
            }
            tokio::select! {
                biased;
                _ = &mut deadline => {
                    if expires.is_some_and(|e| e <= Instant::now()) {
                        tracing::info!(peer = %conn.kept.peer, client = &*h.client_id, "keep-alive expired; connection closed");
                        conn.disconnect(ReasonCode::KeepAliveTimeout);
                        return End::Close(Disconnect::Abrupt, None);
                    }
                    // Idle long enough: parked without its task, if nothing is left to do.
                    if conn.is_idle() && buf.is_empty() && h.signals.closing().is_none() {
                        return End::Park(expires);
                    }
                    deadline.as_mut().reset(wake_at(expires));
                }
                // The oldest acknowledgement waiting for the store may go out (the top of the
                // loop sends it and whatever else is durable by then).
                acked = std::future::poll_fn(|cx| conn.poll_acks(cx)), if !conn.pending_acks.is_empty() => {
                    if let Err(e) = acked {
                        // MQTT 3.1.1 cannot say the store failed: what was acknowledged before
                        // goes out, then the connection closes without the acknowledgement.
                        let _ = conn.failed_ack(e).await;
                        return End::Close(Disconnect::Abrupt, None);
                    }
                }
                _ = async {
                    if let Some(drained) = hold {
                        let _ = drained.await;
                    }
                }, if conn.held_back() => {}
                read = { room_to_read(buf); rd.read_buf(buf) }, if may_read => {
                    let got = match read {
                        Ok(0) | Err(_) => return End::Close(Disconnect::Abrupt, None),
                        Ok(n) => n,
                    };
                    // A close the broker asked for comes before what the client sent meanwhile
                    // (a taken-over connection's packets are not handled; at shutdown they are,
                    // in `close`).
                    if let Some(why) = h.signals.closing() {
                        return Box::pin(close(why, rd, buf, conn, broker, h, max as usize)).await;
                    }
                    // A ping alone is what an idle client sends: it is parked again as soon as
                    // the answer is out, not after another idle spell.
                    let ping_only = parks && buf[..] == PINGREQ;
                    let packets = match handle_buffered(buf, conn, broker, h, max as usize) {
                        Ok(n) => n,
                        Err(end) => return end,
                    };
                    // §3.1.2.10: keep-alive counts whole control packets, not bytes (a packet dribbled
                    // a byte per period does not keep a connection open).
                    if packets > 0 {
                        if let Some(g) = grace() {
                            expires = Some(Instant::now() + g);
                        }
                        if ping_only {
                            deadline.as_mut().reset(Instant::now());
                        } else if parks || expires.is_some() {
                            deadline.as_mut().reset(wake_at(expires));
                        }
                    }
                    // A quiet connection holds no read buffer between packets; a busy one (whose
                    // reads are large) keeps its buffer.
                    if buf.is_empty() && got < KEEP_ABOVE {
                        *buf = BytesMut::new();
                    }
                }
                // Last, as deliveries always came after reading: the client's own packets (a
                // DISCONNECT, acknowledgements) are handled before what is sent to it.
                _ = h.signals.notified() => {
                    if let Some(why) = h.signals.closing() {
                        return Box::pin(close(why, rd, buf, conn, broker, h, max as usize)).await;
                    }
                    let sends = broker.sendable(h);
                    conn.push_sends(broker, h, sends);
                    // Deliveries are activity: parking waits for a quiet spell.
                    if parks {
                        deadline.as_mut().reset(wake_at(expires));
                    }
                }
            }
        }
    }
}

/// §3.1.2.10: how long a connection with this keep-alive may stay silent (one and a half
/// periods); `None` without a keep-alive. The connection's loop and the parking lot (which
/// renews a parked client's keep-alive on its ping) both count with it.
pub(super) fn keep_alive_grace(keep_alive: u16) -> Option<Duration> {
    (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500))
}

/// Most acknowledgements a connection keeps waiting for the store while it reads on: past it, it
/// reads nothing more until the oldest are durable (an MQTT 3.1.1 client has no Receive Maximum
/// and may send QoS 1 messages without waiting).
const MAX_PENDING_ACKS: usize = 1_024;

/// A PINGREQ, whole (fixed header, no remaining length).
pub(super) const PINGREQ: [u8; 2] = [0xC0, 0x00];

/// Closes the connection for the broker's reason, telling an MQTT 5 client why.
async fn close<R, W>(
    why: Close,
    rd: &mut R,
    buf: &mut BytesMut,
    conn: &mut Conn<W>,
    broker: &Broker,
    h: &ConnectionHandle,
    max: usize,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match why {
        Close::Stalled => {
            tracing::info!(peer = %conn.kept.peer, client = &*h.client_id, "subscriber held its publishers back past the stall timeout; connection closed");
            conn.disconnect(ReasonCode::QuotaExceeded);
            End::Close(Disconnect::Abrupt, None)
        }
        Close::Administrative => {
            tracing::info!(peer = %conn.kept.peer, client = &*h.client_id, "connection closed by an operator (DeleteConnection)");
            conn.disconnect(ReasonCode::AdministrativeAction);
            End::Close(Disconnect::Abrupt, None)
        }
        Close::TakenOver => {
            conn.disconnect(ReasonCode::SessionTakenOver);
            End::TakenOver
        }
        Close::ShuttingDown => {
            if let Some(end) = handle_received(rd, buf, conn, broker, h, max).await {
                return end;
            }
            conn.disconnect(ReasonCode::ServerShuttingDown);
            End::Close(Disconnect::Abrupt, None)
        }
    }
}

/// At shutdown: what the client sent before it is handled rather than dropped unread, above all
/// acknowledgements (a delivery the client acknowledged while this connection waited for the store
/// must not be sent again after the restart). Reads only what has already arrived, a bounded
/// amount; `Some` when the client's own packets end the connection (its DISCONNECT).
pub(super) async fn handle_received<R, W>(
    rd: &mut R,
    buf: &mut BytesMut,
    conn: &mut Conn<W>,
    broker: &Broker,
    h: &ConnectionHandle,
    max: usize,
) -> Option<End>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use futures_util::FutureExt;
    for _ in 0..SHUTDOWN_READS {
        room_to_read(buf);
        match rd.read_buf(buf).now_or_never() {
            Some(Ok(n)) if n > 0 => {}
            _ => break,
        }
        if let Err(end) = handle_buffered(buf, conn, broker, h, max) {
            return Some(end);
        }
    }
    // Acknowledgements of what was just handled wait for the store, as at any other time.
    let _ = conn.flush().await;
    None
}

/// Reads of already-received data a connection makes while the broker shuts down.
pub(super) const SHUTDOWN_READS: usize = 16;

/// Handles every complete packet in `buf`, then queues what the engine has to send. Returns how
/// many packets it handled, or how the connection ends.
pub(super) fn handle_buffered<W: AsyncWrite + Unpin>(
    buf: &mut BytesMut,
    conn: &mut Conn<W>,
    broker: &Broker,
    h: &ConnectionHandle,
    max: usize,
) -> Result<usize, End> {
    let mut packets = 0;
    // Subscribers this batch's messages went to (woken when dropped, on every way out).
    let mut wakes = Wakes::new();
    loop {
        let frame = match split_frame(buf, max) {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::info!(peer = %conn.kept.peer, client = &*h.client_id, error = %e, "bad packet; connection closed");
                conn.disconnect(e.reason_code());
                return Err(End::Close(Disconnect::Abrupt, None));
            }
        };
        packets += 1;
        if conn.holding() && !bypasses_parking(&frame) {
            conn.park(frame);
            continue;
        }
        if let Some(end) = handle(&frame, conn, broker, h, &mut wakes) {
            return Err(end);
        }
    }
    // Everyone this batch's messages went to, once.
    wakes.wake_all();
    let sends = broker.sendable(h);
    conn.push_sends(broker, h, sends);
    Ok(packets)
}
