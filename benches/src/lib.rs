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
