//! A local HTTP endpoint for SNS subscriptions, as a user's service would be.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::http::http;

/// A local HTTP endpoint: confirms its subscription (GET of the SubscribeURL), answers
/// notifications with 500 until `healthy` is set, then 200, counting the messages it accepted.
pub struct Endpoint {
    pub url: String,
    pub healthy: Arc<AtomicBool>,
    pub received: Arc<Mutex<BTreeMap<u32, u32>>>,
    pub attempts: Arc<AtomicU32>,
}

fn read_request(s: &mut TcpStream) -> Option<(String, String)> {
    let mut reader = BufReader::new(s.try_clone().ok()?);
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
        head.push_str(&line);
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((head, String::from_utf8_lossy(&body).to_string()))
}

impl Endpoint {
    pub fn start() -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let healthy = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(BTreeMap::new()));
        let attempts = Arc::new(AtomicU32::new(0));
        let (h, r, a) = (healthy.clone(), received.clone(), attempts.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let (h, r, a) = (h.clone(), r.clone(), a.clone());
                std::thread::spawn(move || {
                    while let Some((head, body)) = read_request(&mut s) {
                        let lower = head.to_ascii_lowercase();
                        let mut status = 200;
                        if lower.contains("x-amz-sns-message-type: subscriptionconfirmation") {
                            let v: serde_json::Value = serde_json::from_str(&body).expect("json");
                            let url = v["SubscribeURL"]
                                .as_str()
                                .expect("SubscribeURL")
                                .to_string();
                            std::thread::spawn(move || {
                                let rest = url.trim_start_matches("http://");
                                let (host, path) =
                                    rest.split_at(rest.find('/').unwrap_or(rest.len()));
                                let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
                                let (code, _) = http(&format!("http://{host}"), req.as_bytes());
                                assert_eq!(code, 200, "confirmation GET");
                            });
                        } else if lower.contains("x-amz-sns-message-type: notification") {
                            a.fetch_add(1, Ordering::Relaxed);
                            if h.load(Ordering::Relaxed) {
                                let v: serde_json::Value =
                                    serde_json::from_str(&body).expect("json");
                                let n: u32 = v["Message"]
                                    .as_str()
                                    .and_then(|m| m.parse().ok())
                                    .expect("number");
                                *r.lock().unwrap().entry(n).or_insert(0) += 1;
                            } else {
                                status = 500;
                            }
                        }
                        let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                        if s.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Endpoint {
            url,
            healthy,
            received,
            attempts,
        }
    }
}
