//! Delivery policies: how often and how fast a failing HTTP (or MQTT) delivery is retried, and how
//! fast one endpoint is sent to. SNS's four phases, in order: immediate retries, pre-backoff
//! retries at the minimum delay, backoff retries from the minimum to the maximum delay along the
//! backoff function, and post-backoff retries at the maximum delay.
//!
//! AWS documents the shape of the four backoff functions only as a chart. Here, with `t` the
//! position in the backoff phase from 0 to 1, the delay is `min + (max - min) * f(t)` with
//! linear `f = t`, arithmetic `t²`, geometric `t³` and exponential `(2^(10t) - 1) / 1023`: all
//! start at the minimum, end at the maximum, and rise in the same order as AWS's chart.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::error::{Result, TopicError};

/// The retry schedule of one subscription.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Smallest delay, seconds.
    pub min_delay: u32,
    /// Largest delay, seconds.
    pub max_delay: u32,
    /// Retries after the first attempt.
    pub num_retries: u32,
    /// Retries with no delay.
    pub num_no_delay: u32,
    /// Retries at the minimum delay.
    pub num_min_delay: u32,
    /// Retries at the maximum delay.
    pub num_max_delay: u32,
    /// The backoff function.
    pub backoff: Backoff,
}

/// SNS's backoff functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// Straight line.
    Linear,
    /// Slow, then faster.
    Arithmetic,
    /// Slower, then faster.
    Geometric,
    /// Slowest, then fastest.
    Exponential,
}

impl Backoff {
    fn parse(s: &str) -> Option<Backoff> {
        Some(match s {
            "linear" => Backoff::Linear,
            "arithmetic" => Backoff::Arithmetic,
            "geometric" => Backoff::Geometric,
            "exponential" => Backoff::Exponential,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Backoff::Linear => "linear",
            Backoff::Arithmetic => "arithmetic",
            Backoff::Geometric => "geometric",
            Backoff::Exponential => "exponential",
        }
    }

    fn curve(self, t: f64) -> f64 {
        match self {
            Backoff::Linear => t,
            Backoff::Arithmetic => t * t,
            Backoff::Geometric => t * t * t,
            Backoff::Exponential => (2f64.powf(10.0 * t) - 1.0) / 1023.0,
        }
    }
}

/// SNS's default for HTTP/S: three retries 20 s apart.
pub const DEFAULT_RETRY: RetryPolicy = RetryPolicy {
    min_delay: 20,
    max_delay: 20,
    num_retries: 3,
    num_no_delay: 0,
    num_min_delay: 0,
    num_max_delay: 0,
    backoff: Backoff::Linear,
};

impl RetryPolicy {
    /// The delay before retry `n` (1 is the first retry), or `None` when there is no retry `n`.
    pub fn delay(&self, n: u32) -> Option<Duration> {
        if n == 0 || n > self.num_retries {
            return None;
        }
        let secs = |s: f64| Some(Duration::from_millis((s * 1000.0) as u64));
        if n <= self.num_no_delay {
            return Some(Duration::ZERO);
        }
        if n <= self.num_no_delay + self.num_min_delay {
            return secs(f64::from(self.min_delay));
        }
        let backoff = self.num_retries
            - self.num_no_delay
            - self.num_min_delay
            - self.num_max_delay.min(self.num_retries);
        let j = n - self.num_no_delay - self.num_min_delay;
        if j > backoff {
            return secs(f64::from(self.max_delay));
        }
        let t = f64::from(j) / f64::from(backoff.max(1));
        let (min, max) = (f64::from(self.min_delay), f64::from(self.max_delay));
        secs(min + (max - min) * self.backoff.curve(t))
    }

    fn to_json(self) -> Value {
        json!({
            "minDelayTarget": self.min_delay,
            "maxDelayTarget": self.max_delay,
            "numRetries": self.num_retries,
            "numMaxDelayRetries": self.num_max_delay,
            "numNoDelayRetries": self.num_no_delay,
            "numMinDelayRetries": self.num_min_delay,
            "backoffFunction": self.backoff.as_str(),
        })
    }
}

/// What a delivery follows: retries, throttle and request policy.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryPolicy {
    /// Retries.
    pub retry: RetryPolicy,
    /// Most delivery attempts per second to this endpoint.
    pub max_per_second: Option<u32>,
    /// `Content-Type` of the POST.
    pub content_type: Option<String>,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            retry: DEFAULT_RETRY,
            max_per_second: None,
            content_type: None,
        }
    }
}

fn bad(reason: impl std::fmt::Display) -> TopicError {
    TopicError::invalid(format!("DeliveryPolicy: {reason}"))
}

fn uint(obj: &Map<String, Value>, key: &str, default: u32) -> Result<u32> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(format!("{key} must be a non-negative integer"))),
    }
}

fn retry_from(obj: &Map<String, Value>) -> Result<RetryPolicy> {
    let min = uint(obj, "minDelayTarget", DEFAULT_RETRY.min_delay)?;
    let max = uint(obj, "maxDelayTarget", DEFAULT_RETRY.max_delay)?;
    let retries = uint(obj, "numRetries", DEFAULT_RETRY.num_retries)?;
    let no_delay = uint(obj, "numNoDelayRetries", 0)?;
    let min_retries = uint(obj, "numMinDelayRetries", 0)?;
    let max_retries = uint(obj, "numMaxDelayRetries", 0)?;
    let backoff = match obj.get("backoffFunction") {
        None | Some(Value::Null) => Backoff::Linear,
        Some(Value::String(s)) => Backoff::parse(s).ok_or_else(|| {
            bad("backoffFunction must be one of arithmetic, exponential, geometric, linear")
        })?,
        Some(_) => return Err(bad("backoffFunction must be a string")),
    };
    if !(1..=3600).contains(&max) {
        return Err(bad("maxDelayTarget must be between 1 and 3600"));
    }
    if min < 1 || min > max {
        return Err(bad("minDelayTarget must be between 1 and maxDelayTarget"));
    }
    if retries > 100 {
        return Err(bad("numRetries must be between 0 and 100"));
    }
    if u64::from(no_delay) + u64::from(min_retries) + u64::from(max_retries) > u64::from(retries) {
        return Err(bad(
            "numNoDelayRetries + numMinDelayRetries + numMaxDelayRetries must not exceed numRetries",
        ));
    }
    let p = RetryPolicy {
        min_delay: min,
        max_delay: max,
        num_retries: retries,
        num_no_delay: no_delay,
        num_min_delay: min_retries,
        num_max_delay: max_retries,
        backoff,
    };
    let total: Duration = (1..=retries).filter_map(|n| p.delay(n)).sum();
    if total > Duration::from_secs(3600) {
        return Err(bad("the retries must end within 3600 seconds"));
    }
    Ok(p)
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| bad(format!("{what} must be a JSON object")))
}

fn throttle_from(v: Option<&Value>) -> Result<Option<u32>> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let obj = object(v, "throttlePolicy")?;
    match obj.get("maxReceivesPerSecond") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n @ 1..) => Ok(Some(u32::try_from(n).unwrap_or(u32::MAX))),
            _ => Err(bad("maxReceivesPerSecond must be a positive integer")),
        },
    }
}

fn content_type_from(v: Option<&Value>) -> Result<Option<String>> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let obj = object(v, "requestPolicy")?;
    match obj.get("headerContentType") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s))
            if matches!(
                s.as_str(),
                "text/plain" | "application/json" | "application/xml"
            ) || s.starts_with("text/plain;")
                || s.starts_with("application/json;")
                || s.starts_with("application/xml;") =>
        {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(bad(
            "headerContentType must be text/plain, application/json or application/xml",
        )),
    }
}

fn parse_json(text: &str) -> Result<Value> {
    let v: Value = serde_json::from_str(text).map_err(|_| bad("not valid JSON"))?;
    if !v.is_object() {
        return Err(bad("must be a JSON object"));
    }
    Ok(v)
}

/// A topic's `DeliveryPolicy`: its `http` section's defaults, and whether subscriptions may
/// override them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TopicDeliveryPolicy {
    /// The default for the topic's HTTP/S subscriptions.
    pub default: DeliveryPolicy,
    /// `disableSubscriptionOverrides`.
    pub no_overrides: bool,
}

impl TopicDeliveryPolicy {
    /// Parses and validates a topic's `DeliveryPolicy` attribute (empty: the default).
    pub fn parse(text: &str) -> Result<TopicDeliveryPolicy> {
        if text.trim().is_empty() {
            return Ok(TopicDeliveryPolicy::default());
        }
        let v = parse_json(text)?;
        let Some(http) = v.get("http").filter(|h| !h.is_null()) else {
            return Ok(TopicDeliveryPolicy::default());
        };
        let http = object(http, "http")?;
        let retry = match http.get("defaultHealthyRetryPolicy") {
            None | Some(Value::Null) => DEFAULT_RETRY,
            Some(v) => retry_from(object(v, "defaultHealthyRetryPolicy")?)?,
        };
        Ok(TopicDeliveryPolicy {
            default: DeliveryPolicy {
                retry,
                max_per_second: throttle_from(http.get("defaultThrottlePolicy"))?,
                content_type: content_type_from(http.get("defaultRequestPolicy"))?,
            },
            no_overrides: http
                .get("disableSubscriptionOverrides")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    /// The `EffectiveDeliveryPolicy` a topic reports.
    pub fn effective_json(&self) -> String {
        let mut http = Map::new();
        http.insert(
            "defaultHealthyRetryPolicy".into(),
            self.default.retry.to_json(),
        );
        http.insert(
            "disableSubscriptionOverrides".into(),
            Value::Bool(self.no_overrides),
        );
        if let Some(n) = self.default.max_per_second {
            http.insert(
                "defaultThrottlePolicy".into(),
                json!({ "maxReceivesPerSecond": n }),
            );
        }
        http.insert(
            "defaultRequestPolicy".into(),
            json!({ "headerContentType": self.default.content_type.as_deref().unwrap_or("text/plain; charset=UTF-8") }),
        );
        json!({ "http": Value::Object(http) }).to_string()
    }

    /// The policy a subscription follows, given its own `DeliveryPolicy` attribute.
    pub fn for_subscription(&self, own: Option<&str>) -> Result<DeliveryPolicy> {
        let own = match own.filter(|s| !s.trim().is_empty()) {
            Some(text) if !self.no_overrides => parse_subscription(text)?,
            _ => return Ok(self.default.clone()),
        };
        Ok(DeliveryPolicy {
            retry: own.0.unwrap_or(self.default.retry),
            max_per_second: own.1.or(self.default.max_per_second),
            content_type: own.2.or_else(|| self.default.content_type.clone()),
        })
    }
}

type SubscriptionParts = (Option<RetryPolicy>, Option<u32>, Option<String>);

fn parse_subscription(text: &str) -> Result<SubscriptionParts> {
    let v = parse_json(text)?;
    let retry = match v.get("healthyRetryPolicy") {
        None | Some(Value::Null) => None,
        Some(r) => Some(retry_from(object(r, "healthyRetryPolicy")?)?),
    };
    Ok((
        retry,
        throttle_from(v.get("throttlePolicy"))?,
        content_type_from(v.get("requestPolicy"))?,
    ))
}

/// Validates a subscription's `DeliveryPolicy` attribute.
pub fn validate_subscription_policy(text: &str) -> Result<()> {
    parse_subscription(text).map(|_| ())
}

/// The `EffectiveDeliveryPolicy` a subscription reports.
pub fn effective_subscription_json(p: &DeliveryPolicy) -> String {
    let mut out = Map::new();
    out.insert("healthyRetryPolicy".into(), p.retry.to_json());
    if let Some(n) = p.max_per_second {
        out.insert(
            "throttlePolicy".into(),
            json!({ "maxReceivesPerSecond": n }),
        );
    }
    out.insert(
        "requestPolicy".into(),
        json!({ "headerContentType": p.content_type.as_deref().unwrap_or("text/plain; charset=UTF-8") }),
    );
    Value::Object(out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(p: &RetryPolicy, n: u32) -> Option<u64> {
        p.delay(n).map(|d| d.as_secs())
    }

    #[test]
    fn the_four_phases() {
        let p = retry_from(
            parse_json(r#"{"minDelayTarget":2,"maxDelayTarget":10,"numRetries":10,"numNoDelayRetries":2,"numMinDelayRetries":2,"numMaxDelayRetries":2,"backoffFunction":"linear"}"#)
                .unwrap()
                .as_object()
                .unwrap(),
        )
        .unwrap();
        let delays: Vec<Option<u64>> = (1..=11).map(|n| secs(&p, n)).collect();
        assert_eq!(
            delays,
            vec![
                Some(0),
                Some(0),
                Some(2),
                Some(2),
                Some(4),
                Some(6),
                Some(8),
                Some(10),
                Some(10),
                Some(10),
                None
            ]
        );
    }

    #[test]
    fn every_backoff_starts_low_and_ends_at_the_maximum() {
        for f in ["linear", "arithmetic", "geometric", "exponential"] {
            let p = retry_from(
                parse_json(&format!(
                    r#"{{"minDelayTarget":1,"maxDelayTarget":100,"numRetries":10,"backoffFunction":"{f}"}}"#
                ))
                .unwrap()
                .as_object()
                .unwrap(),
            )
            .unwrap();
            let d: Vec<Duration> = (1..=10).filter_map(|n| p.delay(n)).collect();
            assert_eq!(d.len(), 10);
            assert!(d.windows(2).all(|w| w[0] <= w[1]), "{f}: {d:?}");
            assert_eq!(d[9], Duration::from_secs(100), "{f}");
        }
    }

    #[test]
    fn invalid_policies_are_refused() {
        for bad in [
            r#"{"http":{"defaultHealthyRetryPolicy":{"minDelayTarget":0}}}"#,
            r#"{"http":{"defaultHealthyRetryPolicy":{"maxDelayTarget":4000}}}"#,
            r#"{"http":{"defaultHealthyRetryPolicy":{"numRetries":101}}}"#,
            r#"{"http":{"defaultHealthyRetryPolicy":{"numRetries":2,"numNoDelayRetries":3}}}"#,
            r#"{"http":{"defaultHealthyRetryPolicy":{"backoffFunction":"cubic"}}}"#,
            r#"{"http":{"defaultThrottlePolicy":{"maxReceivesPerSecond":0}}}"#,
            r#"{"http":{"defaultHealthyRetryPolicy":{"minDelayTarget":3600,"maxDelayTarget":3600,"numRetries":5}}}"#,
            "[]",
            "{",
        ] {
            assert!(TopicDeliveryPolicy::parse(bad).is_err(), "{bad}");
        }
        let t = TopicDeliveryPolicy::parse(r#"{"http":{"defaultHealthyRetryPolicy":{"minDelayTarget":5,"maxDelayTarget":5,"numRetries":1},"disableSubscriptionOverrides":true}}"#).unwrap();
        let s = t
            .for_subscription(Some(r#"{"healthyRetryPolicy":{"numRetries":9}}"#))
            .unwrap();
        assert_eq!(s.retry.num_retries, 1, "overrides disabled");
    }
}
