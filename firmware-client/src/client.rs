//! The clients: [`blocking::Client`] over `embedded-io` and [`asynch::Client`] over
//! `embedded-io-async`. Both are the same code (one macro, expanded with and without `.await`)
//! around the sans-I/O [`Session`](crate::Session); they only move bytes.

/// Buffers the caller lends the client. Sizes decide RAM use (see the crate docs).
pub struct Buffers<'b> {
    /// Incoming packets: the largest message the device accepts, plus its topic and header.
    pub rx: &'b mut [u8],
    /// Outgoing control packets and QoS 0 publishes.
    pub tx: &'b mut [u8],
    /// Stored QoS 1/2 publishes (in flight and offline).
    pub outgoing: &'b mut [u8],
}

macro_rules! client_impl {
    (($($async:tt)?) ($($await:tt)*) $connect_waits:expr) => {
        use outpost_codec::{decode_from_server, Decoded, Packet, QoS, SubscribeFilter};

        use crate::client::Buffers;
        use crate::session::{Event, Session};
        use crate::{Config, Error};

        /// An MQTT client over one transport at a time. Reconnect by calling
        /// [`Client::connect`] with a new transport; the session (unacknowledged and offline
        /// messages) carries over.
        pub struct Client<'b, T, C, const N: usize> {
            session: Session<'b, N>,
            transport: Option<T>,
            clock: C,
            rx: &'b mut [u8],
            rx_len: usize,
            tx: &'b mut [u8],
        }

        enum Step {
            Incomplete,
            Handled { used: usize, reply: usize, connack: Option<Result<bool, outpost_codec::ReasonCode>> },
        }

        impl<'b, T, C, const N: usize> Client<'b, T, C, N>
        where
            T: Read + Write + ReadReady,
            C: FnMut() -> u64,
        {
            /// A client that is not connected yet. `clock` returns milliseconds from any fixed
            /// point (a hardware timer, `embassy_time::Instant::now().as_millis()`, ...).
            pub fn new(config: Config<'b>, buffers: Buffers<'b>, clock: C) -> Self {
                let rx_capacity = buffers.rx.len();
                Client {
                    session: Session::new(config, buffers.outgoing, rx_capacity),
                    transport: None,
                    clock,
                    rx: buffers.rx,
                    rx_len: 0,
                    tx: buffers.tx,
                }
            }

            /// Whether the client is connected.
            pub fn is_connected(&self) -> bool {
                self.transport.is_some() && self.session.is_connected()
            }

            /// QoS 1/2 messages not yet acknowledged (in flight or waiting offline).
            pub fn pending(&self) -> usize {
                self.session.pending()
            }

            /// Offline messages dropped to make room for newer ones.
            pub fn dropped(&self) -> u32 {
                self.session.dropped()
            }

            fn fail(&mut self, e: Error<T::Error>) -> Error<T::Error> {
                // The transport stays: `disconnect` hands it back, so a socket that borrows its
                // buffers (embassy-net's `TcpSocket`) can be closed and connected again.
                self.session.link_down();
                #[cfg(feature = "defmt")]
                defmt::warn!("mqtt link down");
                e
            }

            $($async)? fn write(&mut self, n: usize) -> Result<(), Error<T::Error>> {
                let Some(t) = self.transport.as_mut() else {
                    return Err(Error::NotConnected);
                };
                match t.write_all(&self.tx[..n]) $($await)* {
                    Ok(()) => {
                        self.session.sent((self.clock)());
                        Ok(())
                    }
                    Err(e) => Err(self.fail(Error::Transport(e))),
                }
            }

            /// Reads once; `Ok(false)` if nothing was ready and `wait` is false.
            $($async)? fn read(&mut self, wait: bool) -> Result<bool, Error<T::Error>> {
                let Some(t) = self.transport.as_mut() else {
                    return Err(Error::NotConnected);
                };
                if !wait {
                    match t.read_ready() {
                        Ok(true) => {}
                        Ok(false) => return Ok(false),
                        Err(e) => return Err(self.fail(Error::Transport(e))),
                    }
                }
                if self.rx_len == self.rx.len() {
                    return Err(self.fail(Error::TooLarge));
                }
                match t.read(&mut self.rx[self.rx_len..]) $($await)* {
                    Ok(0) => Err(self.fail(Error::Closed)),
                    Ok(n) => {
                        self.rx_len += n;
                        Ok(true)
                    }
                    Err(e) => Err(self.fail(Error::Transport(e))),
                }
            }

            /// Decodes and handles one packet from the receive buffer.
            fn step(&mut self, on_event: &mut impl FnMut(Event<'_>)) -> Result<Step, Error<T::Error>> {
                let version = self.session.version();
                let now = (self.clock)();
                let result = match decode_from_server(&self.rx[..self.rx_len], version, self.rx.len()) {
                    Err(e) => Err(Error::Protocol(e)),
                    Ok(Decoded::Incomplete { .. }) => Ok(Step::Incomplete),
                    Ok(Decoded::Packet(Packet::ConnAck(a), used)) => {
                        Ok(Step::Handled { used, reply: 0, connack: Some(self.session.on_connack(&a, now)) })
                    }
                    Ok(Decoded::Packet(p, used)) => match self.session.handle(p, self.tx, on_event) {
                        Ok(reply) => Ok(Step::Handled { used, reply, connack: None }),
                        Err(e) => Err(e.with_transport()),
                    },
                };
                match result {
                    Ok(Step::Handled { used, reply, connack }) => {
                        crate::outgoing::shift_down(self.rx, used..self.rx_len, 0);
                        self.rx_len -= used;
                        Ok(Step::Handled { used, reply, connack })
                    }
                    Ok(Step::Incomplete) => Ok(Step::Incomplete),
                    Err(e) => Err(self.fail(e)),
                }
            }

            /// Handles every complete packet in the receive buffer.
            $($async)? fn process(&mut self, on_event: &mut impl FnMut(Event<'_>)) -> Result<(), Error<T::Error>> {
                loop {
                    match self.step(on_event)? {
                        Step::Incomplete => return Ok(()),
                        Step::Handled { reply, connack, .. } => {
                            if connack.is_some() {
                                return Err(self.fail(Error::Unexpected));
                            }
                            if reply > 0 {
                                self.write(reply) $($await)* ?;
                            }
                        }
                    }
                }
            }

            /// Writes resent PUBRELs and queued publishes the in-flight window allows.
            $($async)? fn flush(&mut self) -> Result<(), Error<T::Error>> {
                while let Some(n) = self.session.next_pubrel(self.tx) {
                    self.write(n) $($await)* ?;
                }
                while let Some(e) = self.session.next_publish() {
                    let Some(t) = self.transport.as_mut() else {
                        return Err(Error::NotConnected);
                    };
                    if let Err(err) = t.write_all(self.session.stored(&e)) $($await)* {
                        return Err(self.fail(Error::Transport(err)));
                    }
                    self.session.sent((self.clock)());
                }
                Ok(())
            }

            /// Connects over `transport`: sends CONNECT, waits for CONNACK (the blocking client
            /// up to `Config::connect_timeout_ms`; wrap the async one in a timeout), then resends everything unacknowledged (with DUP) and what was queued
            /// offline. Returns whether the broker resumed a stored session.
            pub $($async)? fn connect(&mut self, transport: T) -> Result<bool, Error<T::Error>> {
                self.transport = Some(transport);
                self.session.link_down();
                self.rx_len = 0;
                let n = self.session.encode_connect(self.tx).map_err(Error::with_transport)?;
                self.write(n) $($await)* ?;
                let deadline = (self.clock)().saturating_add(self.session.config().connect_timeout_ms);
                let mut ignore = |_: Event<'_>| {};
                loop {
                    match self.step(&mut ignore)? {
                        Step::Handled { connack: Some(Ok(present)), .. } => {
                            #[cfg(feature = "defmt")]
                            defmt::info!("mqtt connected, session present: {}", present);
                            self.flush() $($await)* ?;
                            return Ok(present);
                        }
                        Step::Handled { connack: Some(Err(code)), .. } => {
                            return Err(self.fail(Error::Refused(code)));
                        }
                        Step::Handled { .. } => return Err(self.fail(Error::Unexpected)),
                        Step::Incomplete => {}
                    }
                    if (self.clock)() > deadline {
                        return Err(self.fail(Error::Timeout));
                    }
                    // The async client awaits the read (bound it with your runtime's timeout);
                    // the blocking one polls readiness so the timeout holds.
                    self.read($connect_waits) $($await)* ?;
                }
            }

            /// Publishes. QoS 0 needs a connection and returns `None`. QoS 1/2 messages are
            /// stored until acknowledged — while offline they wait for the next `connect` —
            /// and return their packet id ([`Event::Published`] reports the acknowledgement).
            pub $($async)? fn publish(
                &mut self,
                topic: &str,
                payload: &[u8],
                qos: QoS,
                retain: bool,
            ) -> Result<Option<u16>, Error<T::Error>> {
                if qos == QoS::AtMostOnce {
                    if !self.is_connected() {
                        return Err(Error::NotConnected);
                    }
                    let n = self.session.encode_qos0(topic, payload, retain, self.tx).map_err(Error::with_transport)?;
                    self.write(n) $($await)* ?;
                    return Ok(None);
                }
                let pkid = self.session.enqueue(topic, payload, qos, retain).map_err(Error::with_transport)?;
                if self.is_connected() {
                    self.flush() $($await)* ?;
                }
                Ok(Some(pkid))
            }

            /// Subscribes; returns the packet id that [`Event::Subscribed`] will carry.
            pub $($async)? fn subscribe(&mut self, filters: &[SubscribeFilter<'_>]) -> Result<u16, Error<T::Error>> {
                if !self.is_connected() {
                    return Err(Error::NotConnected);
                }
                let (pkid, n) = self.session.encode_subscribe(filters, self.tx).map_err(Error::with_transport)?;
                self.write(n) $($await)* ?;
                Ok(pkid)
            }

            /// Unsubscribes; returns the packet id that [`Event::Unsubscribed`] will carry.
            pub $($async)? fn unsubscribe(&mut self, filters: &[&str]) -> Result<u16, Error<T::Error>> {
                if !self.is_connected() {
                    return Err(Error::NotConnected);
                }
                let (pkid, n) = self.session.encode_unsubscribe(filters, self.tx).map_err(Error::with_transport)?;
                self.write(n) $($await)* ?;
                Ok(pkid)
            }

            /// Does the connection's work without waiting: reads what the transport has ready,
            /// handles it (events go to `on_event`, acknowledgements go out), sends queued
            /// publishes, and a PINGREQ when the keep-alive period is up. Call it often (at least
            /// a few times per keep-alive period). An error means the link is down: reconnect.
            pub $($async)? fn poll(&mut self, mut on_event: impl FnMut(Event<'_>)) -> Result<(), Error<T::Error>> {
                if !self.is_connected() {
                    return Err(Error::NotConnected);
                }
                while self.read(false) $($await)* ? {
                    self.process(&mut on_event) $($await)* ?;
                }
                self.process(&mut on_event) $($await)* ?;
                self.flush() $($await)* ?;
                let now = (self.clock)();
                if let Some(n) = self.session.ping(now, self.tx) {
                    self.write(n) $($await)* ?;
                }
                if !self.session.alive(now) {
                    return Err(self.fail(Error::Timeout));
                }
                Ok(())
            }

            /// Waits for data from the broker, then works like [`Client::poll`]. Use it where
            /// blocking (or awaiting) is fine and the keep-alive is handled by calling `poll` on a
            /// timer as well.
            pub $($async)? fn wait(&mut self, mut on_event: impl FnMut(Event<'_>)) -> Result<(), Error<T::Error>> {
                if !self.is_connected() {
                    return Err(Error::NotConnected);
                }
                self.read(true) $($await)* ?;
                self.poll(&mut on_event) $($await)*
            }

            /// Sends DISCONNECT if connected (the broker discards the will) and hands the transport
            /// back — also after the link failed, so the same socket can be reconnected and passed
            /// to [`Client::connect`] again.
            pub $($async)? fn disconnect(&mut self) -> Option<T> {
                if self.is_connected() {
                    let d = outpost_codec::Disconnect::default();
                    if let Ok(n) = d.encode(self.session.version(), self.tx) {
                        let _ = self.write(n) $($await)*;
                    }
                }
                self.session.link_down();
                self.transport.take()
            }
        }
    };
}

/// The blocking client, over `embedded_io::{Read, Write, ReadReady}`.
pub mod blocking {
    use embedded_io::{Read, ReadReady, Write};
    client_impl!(() () false);
}

/// The async client, over `embedded_io_async::{Read, Write}` and `ReadReady`.
pub mod asynch {
    use embedded_io_async::{Read, ReadReady, Write};
    client_impl!((async) (.await) true);
}
