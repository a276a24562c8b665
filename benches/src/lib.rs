//! Shared parts of the load tools in `src/bin` (the criterion benchmarks are in `benches/`).

/// Timed phases with many concurrent clients and their latency histogram.
pub mod load {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use hdrhistogram::Histogram;
    use serde_json::{json, Value};

    /// What one phase of a load run measured.
    #[derive(Default)]
    pub struct Phase {
        pub messages: u64,
        pub requests: u64,
        pub errors: u64,
        pub seconds: f64,
        pub latency: Option<Histogram<u64>>,
    }

    impl Phase {
        /// Messages per second.
        pub fn rate(&self) -> f64 {
            self.messages as f64 / self.seconds.max(1e-9)
        }
        /// Latency at quantile `q`, ms.
        pub fn pct(&self, q: f64) -> f64 {
            self.latency
                .as_ref()
                .map_or(0.0, |h| h.value_at_quantile(q) as f64 / 1000.0)
        }
        /// The figures as JSON.
        pub fn to_json(&self) -> Value {
            json!({
                "messages": self.messages, "requests": self.requests, "errors": self.errors,
                "seconds": self.seconds, "messages_per_second": self.rate(),
                "p50_ms": self.pct(0.5), "p99_ms": self.pct(0.99), "p999_ms": self.pct(0.999),
            })
        }
    }

    /// Runs `work` from `clients` concurrent tasks for `seconds` (or until one reports done): each
    /// call returns the messages it moved and whether the phase is done.
    pub async fn run_phase<F, Fut>(clients: usize, seconds: u64, work: F) -> Phase
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(u64, bool), String>> + Send,
    {
        let work = Arc::new(work);
        let stop = Arc::new(AtomicBool::new(false));
        let messages = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (work, stop, messages) = (work.clone(), stop.clone(), messages.clone());
            tasks.push(tokio::spawn(async move {
                let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
                let (mut requests, mut errors) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed)
                    && started.elapsed() < Duration::from_secs(seconds)
                {
                    let t = Instant::now();
                    match work().await {
                        Ok((n, done)) => {
                            let _ = h.record(t.elapsed().as_micros() as u64);
                            requests += 1;
                            messages.fetch_add(n, Ordering::Relaxed);
                            if done {
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                        Err(e) => {
                            errors += 1;
                            if errors < 3 {
                                eprintln!("error: {e}");
                            }
                        }
                    }
                }
                (h, requests, errors)
            }));
        }
        let mut phase = Phase::default();
        let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
        for t in tasks {
            let (h, r, e) = t.await.expect("client task");
            all.add(&h).expect("same bounds");
            phase.requests += r;
            phase.errors += e;
        }
        phase.seconds = started.elapsed().as_secs_f64();
        phase.messages = messages.load(Ordering::Relaxed);
        phase.latency = Some(all);
        phase
    }
}

/// AWS JSON-protocol calls the HTTP load tools share.
pub mod aws {
    use std::time::Duration;

    use serde_json::{json, Value};

    /// One AWS JSON call: `service` is the target prefix (`AmazonSQS`, `AWSEvents`).
    pub async fn call(
        http: &reqwest::Client,
        url: &str,
        service: &str,
        op: &str,
        body: &Value,
    ) -> Result<Value, String> {
        let resp = http
            .post(url)
            .header("X-Amz-Target", format!("{service}.{op}"))
            .header("Content-Type", "application/x-amz-json-1.0")
            .header("Authorization", "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{op}: {status} {text}"));
        }
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }

    /// Messages a queue holds (visible + in flight + delayed), once the count settles.
    pub async fn depth(http: &reqwest::Client, url: &str, qurl: &str) -> u64 {
        let mut last = u64::MAX;
        loop {
            let attrs = call(
                http,
                url,
                "AmazonSQS",
                "GetQueueAttributes",
                &json!({"QueueUrl": qurl, "AttributeNames": ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"]}),
            )
            .await
            .expect("GetQueueAttributes");
            let n: u64 = [
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ]
            .iter()
            .filter_map(|k| attrs["Attributes"][*k].as_str()?.parse::<u64>().ok())
            .sum();
            if n == last {
                return n;
            }
            last = n;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// The raw MQTT client the load tools share: our own codec over a tokio socket, so a benchmark
/// measures the broker, not a client library's queueing. One connection, its read buffer, and
/// the handful of exchanges the tools need (CONNECT, SUBSCRIBE, a QoS 1 publish and its PUBACK);
/// the tools read `buf` themselves where they count deliveries.
pub mod mqtt {
    use std::time::{Duration, Instant};

    use bytes::{Bytes, BytesMut};
    use outpost_codec::{
        split_frame, Connect, ConnectProperties, List, Packet, Publish, QoS, Subscribe,
        SubscribeFilter, Version,
    };
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// How long a CONNACK or SUBACK may take.
    const HANDSHAKE: Duration = Duration::from_secs(20);

    /// A client's byte stream: TCP, or TLS over it.
    pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
    impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

    /// The TLS client of `tls://HOST:PORT` addresses: it trusts the PEM certificates in the file
    /// named by `OUTPOST_BENCH_CA` and names the server `localhost`.
    fn tls_connector() -> Result<&'static tokio_rustls::TlsConnector, String> {
        use rustls::pki_types::pem::PemObject as _;
        static CONNECTOR: std::sync::OnceLock<Result<tokio_rustls::TlsConnector, String>> =
            std::sync::OnceLock::new();
        CONNECTOR
            .get_or_init(|| {
                let ca = std::env::var("OUTPOST_BENCH_CA")
                    .map_err(|_| "tls:// needs OUTPOST_BENCH_CA (a PEM file)".to_string())?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls::pki_types::CertificateDer::pem_file_iter(&ca)
                    .map_err(|e| format!("{ca}: {e}"))?
                {
                    roots
                        .add(cert.map_err(|e| format!("{ca}: {e}"))?)
                        .map_err(|e| format!("{ca}: {e}"))?;
                }
                let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
                    config,
                )))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Opens `addr` (`HOST:PORT`, or `tls://HOST:PORT`).
    async fn open(addr: &str) -> Result<Box<dyn Io>, String> {
        let (tls, at) = match addr.strip_prefix("tls://") {
            Some(at) => (true, at),
            None => (false, addr),
        };
        let s = TcpStream::connect(at)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        s.set_nodelay(true).ok();
        if !tls {
            return Ok(Box::new(s));
        }
        let name =
            rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let s = tls_connector()?
            .connect(name, s)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        Ok(Box::new(s))
    }

    /// One client connection.
    pub struct Conn {
        pub s: Box<dyn Io>,
        /// Bytes read and not yet taken as packets.
        pub buf: BytesMut,
        pub version: Version,
        pkid: u16,
    }

    impl Conn {
        /// Connects as `id` and waits for a successful CONNACK.
        pub async fn connect(
            addr: &str,
            id: &str,
            version: Version,
            clean: bool,
            properties: ConnectProperties<'_>,
        ) -> Result<Conn, String> {
            let s = open(addr).await?;
            let mut c = Conn {
                s,
                buf: BytesMut::with_capacity(64 * 1024),
                version,
                pkid: 0,
            };
            c.send(&Packet::Connect(Connect {
                protocol: version,
                clean_start: clean,
                keep_alive: 600,
                client_id: id,
                properties,
                ..Connect::default()
            }))
            .await?;
            let f = c.frame(HANDSHAKE).await?;
            // CONNACK: 0x20, length, flags, then the return or reason code.
            if f[0] == 0x20 && f.get(3) == Some(&0) {
                Ok(c)
            } else {
                Err(format!("{addr}: connection refused"))
            }
        }

        /// Connects with MQTT 3.1.1.
        pub async fn v311(addr: &str, id: &str, clean: bool) -> Result<Conn, String> {
            Conn::connect(addr, id, Version::V311, clean, ConnectProperties::default()).await
        }

        /// Writes one packet.
        pub async fn send(&mut self, p: &Packet<'_>) -> Result<(), String> {
            let mut out = BytesMut::new();
            p.encode_to(self.version, &mut out)
                .map_err(|e| format!("{e:?}"))?;
            self.s.write_all(&out).await.map_err(|e| e.to_string())
        }

        /// The next whole packet, waiting at most `limit` for each read.
        pub async fn frame(&mut self, limit: Duration) -> Result<Bytes, String> {
            let deadline = Instant::now() + limit;
            loop {
                if let Some(f) =
                    split_frame(&mut self.buf, usize::MAX).map_err(|e| format!("{e:?}"))?
                {
                    return Ok(f);
                }
                let left = deadline
                    .checked_duration_since(Instant::now())
                    .ok_or("silent")?;
                match tokio::time::timeout(left, self.s.read_buf(&mut self.buf)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return Err("connection closed or silent".into()),
                }
            }
        }

        /// Subscribes to one filter and waits for a granting SUBACK.
        pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<(), String> {
            let filters = [SubscribeFilter::new(filter, qos)];
            self.send(&Packet::Subscribe(Subscribe {
                pkid: 1,
                filters: List::new(&filters),
                ..Subscribe::default()
            }))
            .await?;
            loop {
                let f = self.frame(HANDSHAKE).await?;
                if f[0] == 0x90 {
                    return match f.last() {
                        Some(&code) if code < 0x80 => Ok(()),
                        _ => Err(format!("SUBSCRIBE {filter} refused")),
                    };
                }
            }
        }

        /// Publishes at QoS 1 and waits (up to 30 s) for its PUBACK.
        pub async fn publish_acked(&mut self, topic: &str, payload: &[u8]) -> Result<(), String> {
            self.pkid = self.pkid % 60_000 + 1;
            self.send(&Packet::Publish(Publish {
                qos: QoS::AtLeastOnce,
                pkid: self.pkid,
                ..Publish::new(topic, payload)
            }))
            .await?;
            loop {
                let f = self.frame(Duration::from_secs(30)).await?;
                // PUBACK: 0x40, length, the packet identifier.
                if f[0] == 0x40 && f.len() >= 4 && u16::from_be_bytes([f[2], f[3]]) == self.pkid {
                    return Ok(());
                }
            }
        }
    }
}

/// Command lines of the load tools, parsed with clap like the broker's.
pub mod cli {
    /// A broker to measure, given as `NAME=URL`.
    #[derive(Debug, Clone)]
    pub struct Target {
        pub name: String,
        /// Its HTTP URL, without a trailing `/`.
        pub url: String,
    }

    impl std::str::FromStr for Target {
        type Err = String;

        fn from_str(s: &str) -> Result<Self, Self::Err> {
            let (name, url) = s
                .split_once('=')
                .ok_or_else(|| format!("{s:?}: expected NAME=URL"))?;
            Ok(Target {
                name: name.into(),
                url: url.trim_end_matches('/').into(),
            })
        }
    }

    /// The flags of the HTTP load tools (`sqs-load`, `sns-load`).
    #[derive(Debug, clap::Parser)]
    pub struct HttpLoad {
        /// Concurrent clients.
        #[arg(long, default_value_t = 8)]
        pub clients: usize,
        /// Seconds each phase runs.
        #[arg(long, default_value_t = 5)]
        pub seconds: u64,
        /// Message body size in bytes.
        #[arg(long, default_value_t = 100)]
        pub body: usize,
        /// Where to write the figures as JSON.
        #[arg(long)]
        pub json: Option<String>,
        /// The brokers to measure, in order: NAME=URL.
        #[arg(required = true)]
        pub targets: Vec<Target>,
    }
}
