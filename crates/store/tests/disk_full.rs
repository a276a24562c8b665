//! A full disk: the producer gets `DiskFull` (and the log a line), nothing acknowledged is lost, the
//! store is not damaged, and once space returns it works again. Runs the torture writer on a small
//! tmpfs, so it needs permission to mount (root, as in CI).

mod support;

use std::path::Path;
use std::process::Command;

use outpost_store::{Store, StoreConfig};
use support::payload::Acks;

struct Mount<'a>(&'a Path);

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

fn mount_tmpfs(dir: &Path, size: &str) -> bool {
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn full_disk_refuses_appends_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    if !mount_tmpfs(dir.path(), "3m") {
        // Mounting needs root in an environment that allows mounts (this project's CI machines do).
        // When the suite is meant to run everything, not being able to is a failure; otherwise the
        // skip is said where the test output shows it (libtest captures only `eprint!`).
        assert!(
            std::env::var_os("OUTPOST_REQUIRE_INTEROP").is_none(),
            "cannot mount a small tmpfs; the full-disk test needs mount privileges"
        );
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: could not mount a small tmpfs; the full-disk test needs mount privileges"
        );
        return;
    }
    let _unmount = Mount(dir.path());
    let data = dir.path().join("store");

    let out = Command::new(env!("CARGO_BIN_EXE_outpost-store-torture"))
        .args(["fill", data.to_str().unwrap(), "2", "524288"])
        .output()
        .expect("torture binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut acks = Acks::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        acks.line(line);
    }
    assert!(acks.full, "the writer should have hit the full disk");
    assert!(acks.appended.len() > 100);

    // Reopen on the still-full disk: everything acknowledged is there and intact.
    {
        let store = Store::open(
            &data,
            StoreConfig {
                segment_size: 524_288,
                ..StoreConfig::default()
            },
        )
        .expect("a full disk does not damage the store");
        acks.verify(&store);
    }

    // Give the filesystem room again: appends work.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=16m"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    assert!(grown);
    let store = Store::open(
        &data,
        StoreConfig {
            segment_size: 524_288,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    let s = store.stream("after").unwrap();
    let id = store
        .append_blocking(s, vec![7u8; 100_000])
        .expect("appends work once space is back");
    assert_eq!(store.read(id).unwrap().payload.len(), 100_000);
    acks.verify(&store);
}
