//! Crash test: a real process appending and deleting from several threads is killed with SIGKILL at
//! random points, many times; after each kill the store reopens with every acknowledged append present
//! and intact, every acknowledged delete applied, and nothing damaged returned.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use outpost_store::{Store, StoreConfig};
use support::payload::Acks;

fn iterations() -> usize {
    std::env::var("OUTPOST_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

#[test]
fn acknowledged_writes_survive_sigkill_at_random_points() {
    let dir = tempfile::tempdir().unwrap();
    let mut acks = Acks::default();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}");
    let mut total_kills = 0;
    let mut segments_seen = 0;
    for round in 0..iterations() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_outpost-store-torture"))
            .args(["write", dir.path().to_str().unwrap(), "4", "262144"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("torture binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Let it acknowledge some work first, then kill at a random moment after that.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = 0;
        while seen < 30 {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    acks.line(&line);
                    seen += 1;
                }
                Err(_) => panic!("round {round}: the writer acknowledged nothing within 20 s"),
            }
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let extra = Duration::from_millis(seed % 250);
        let kill_at = Instant::now() + extra;
        while let Ok(line) = rx.recv_timeout(kill_at.saturating_duration_since(Instant::now())) {
            acks.line(&line);
            if Instant::now() >= kill_at {
                break;
            }
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        total_kills += 1;
        for line in rx.iter() {
            acks.line(&line);
        }
        let _ = reader.join();

        let store = Store::open(
            dir.path(),
            StoreConfig {
                segment_size: 262_144,
                ..StoreConfig::default()
            },
        )
        .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        acks.verify(&store);
        segments_seen = segments_seen.max(store.stats().segments);
    }
    assert_eq!(total_kills, iterations());
    assert!(
        acks.appended.len() > 100,
        "the test exercised too little: {}",
        acks.appended.len()
    );
    assert!(!acks.deleted.is_empty());
    eprintln!(
        "{} kills, {} acknowledged appends, {} acknowledged deletes, at most {} segments",
        total_kills,
        acks.appended.len(),
        acks.deleted.len(),
        segments_seen
    );
}
