//! Raw HTTP/1.1 requests: what a client sends, byte for byte.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends `request` (which should say `Connection: close`) and returns the status and body.
/// A connection that cannot be made or written (the broker was just killed, say) comes back as
/// status 0 with the error as its body, so a caller racing a `kill -9` stops instead of panicking;
/// callers that expect an answer assert on the status.
pub fn http(base: &str, request: &[u8]) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = match TcpStream::connect(addr) {
        Ok(s) => s,
        Err(e) => return (0, format!("http connect: {e}")),
    };
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    if let Err(e) = s.write_all(request) {
        return (0, format!("request not sent: {e}"));
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

pub fn sqs_json(base: &str, op: &str, body: &str) -> (u16, String) {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: AmazonSQS.{op}\r\n\
         Content-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    http(base, req.as_bytes())
}

pub fn form_post(base: &str, form: &str) -> (u16, String) {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    http(base, req.as_bytes())
}

/// An SNS call (query protocol): `params` after `Version=2010-03-31`.
pub fn sns_query(base: &str, params: &[(&str, &str)]) -> (u16, String) {
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("Version", "2010-03-31")
        .extend_pairs(params.iter().copied())
        .finish();
    form_post(base, &form)
}

/// An EventBridge call (JSON 1.1 protocol).
pub fn events_json(base: &str, op: &str, body: &str) -> (u16, String) {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: AWSEvents.{op}\r\n\
         Content-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    http(base, req.as_bytes())
}

/// Every message body in the account-`000000000000` queue `queue` (received with a long
/// visibility timeout, so each comes once), until a receive comes back empty.
pub fn receive_all(base: &str, queue: &str) -> Vec<String> {
    let url = format!("{base}/000000000000/{queue}");
    let mut bodies = Vec::new();
    loop {
        let (code, text) = sqs_json(
            base,
            "ReceiveMessage",
            &format!(r#"{{"QueueUrl":"{url}","MaxNumberOfMessages":10,"VisibilityTimeout":300}}"#),
        );
        assert_eq!(code, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        let Some(msgs) = v["Messages"].as_array().filter(|m| !m.is_empty()) else {
            return bodies;
        };
        bodies.extend(
            msgs.iter()
                .filter_map(|m| m["Body"].as_str().map(str::to_string)),
        );
    }
}
