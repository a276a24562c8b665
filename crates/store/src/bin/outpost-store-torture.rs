//! A torture client for the store, used by the crash and disk-full tests (and by hand).
//!
//! `outpost-store-torture write DIR WRITERS SEGMENT_SIZE` opens the store in DIR and appends (and
//! deletes) from WRITERS threads until killed; `fill` does the same without deleting, until the disk is
//! full; after each acknowledged append it prints `A <stream> <seq> <writer> <n>`, after
//! each delete it is about to request `d <stream> <seq>` and after its acknowledgement `D <stream> <seq>`,
//! flushing stdout, so a parent that kills it with SIGKILL
//! knows exactly what was acknowledged. On a full disk it prints `FULL` and exits 0.
//!
//! Payloads describe themselves (writer, number, length, then a pattern derived from them), so a
//! checker can verify any record it finds, acknowledged or not.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use outpost_store::{Store, StoreConfig, StoreError};

#[path = "../../tests/support/payload.rs"]
mod payload;
use payload::payload;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 || !(args[1] == "write" || args[1] == "fill") {
        eprintln!("usage: outpost-store-torture write|fill DIR WRITERS SEGMENT_SIZE");
        std::process::exit(2);
    }
    // `fill` never deletes, so the disk fills up.
    let deletes = args[1] == "write";
    let writers: u32 = args[3].parse().unwrap_or(4);
    let segment_size: u64 = args[4].parse().unwrap_or(1 << 20);
    let config = StoreConfig {
        segment_size,
        reclaim_interval: std::time::Duration::from_millis(50),
        ..StoreConfig::default()
    };
    let store = match Store::open(&args[2], config) {
        Ok(s) => s,
        Err(StoreError::DiskFull) => {
            println!("FULL");
            return;
        }
        Err(e) => {
            eprintln!("open failed: {e}");
            std::process::exit(1);
        }
    };
    let stream = match store.stream("torture") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stream failed: {e}");
            std::process::exit(1);
        }
    };
    // Each run starts its writers at a fresh number range so payloads never repeat across runs.
    let base = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        % 1_000_000) as u32
        * 1000;
    let full = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (store, full) = (store.clone(), full.clone());
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for n in base.. {
                    if full.load(Ordering::SeqCst) {
                        return;
                    }
                    match store.append_blocking(stream, payload(w, n)) {
                        Ok(id) => {
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(out, "A {} {} {} {}", id.stream.0, id.seq, w, n);
                            let _ = out.flush();
                            mine.push(id);
                        }
                        Err(StoreError::DiskFull) => {
                            full.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(e) => {
                            eprintln!("append failed: {e}");
                            std::process::exit(1);
                        }
                    }
                    // Keep about 40 live records per writer, deleting a pseudo-random older one: most
                    // records die young, a few live long, so segments go dead, get compacted and
                    // deleted while the process may be killed at any moment.
                    if deletes && mine.len() > 40 {
                        let victim = mine.remove((n as usize * 7) % (mine.len() - 10));
                        // Announce the delete first: if the process dies before the acknowledgement,
                        // the record may or may not be gone, and the checker must know it was asked.
                        {
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(out, "d {} {}", victim.stream.0, victim.seq);
                            let _ = out.flush();
                        }
                        match store.mark_dead_blocking(&[victim]) {
                            Ok(_) => {
                                let mut out = std::io::stdout().lock();
                                let _ = writeln!(out, "D {} {}", victim.stream.0, victim.seq);
                                let _ = out.flush();
                            }
                            Err(StoreError::DiskFull) => {
                                full.store(true, Ordering::SeqCst);
                                return;
                            }
                            Err(e) => {
                                eprintln!("delete failed: {e}");
                                std::process::exit(1);
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    if full.load(Ordering::SeqCst) {
        println!("FULL");
    }
}
