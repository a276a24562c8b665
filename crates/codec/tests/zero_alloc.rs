//! Decoding a PUBLISH allocates nothing: counted with a global allocator that tallies every call.
// A counting allocator must implement the unsafe `GlobalAlloc` trait; it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use outpost_codec::*;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Only the measuring thread counts: the test harness's own threads allocate when they like.
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: forwards to the system allocator with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

#[test]
fn decoding_publish_allocates_nothing() {
    let payload = vec![7u8; 1024];
    let users = [
        UserProperty::new("unit", "C"),
        UserProperty::new("site", "north"),
    ];
    let p = Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        pkid: 9,
        properties: PublishProperties {
            content_type: Some("text/plain"),
            message_expiry_interval: Some(60),
            user_properties: List::new(&users),
            ..PublishProperties::default()
        },
        ..Publish::new("sensors/a/temp", &payload)
    });
    let mut buf = vec![0u8; 2048];
    let n = p.encode(Version::V5, &mut buf).unwrap();
    let wire = &buf[..n];

    let count = allocations_during(|| {
        for _ in 0..1000 {
            let Ok(Decoded::Packet(Packet::Publish(d), _)) = decode(wire, Version::V5, usize::MAX)
            else {
                panic!("decode failed")
            };
            assert_eq!(d.payload.len(), 1024);
            assert_eq!(d.properties.user_properties.iter().count(), 2);
            std::hint::black_box(&d);
        }
    });
    assert_eq!(count, 0, "allocations while decoding 1000 PUBLISH packets");

    let mut out = vec![0u8; 2048];
    let count = allocations_during(|| {
        for _ in 0..1000 {
            std::hint::black_box(p.encode(Version::V5, &mut out).unwrap());
        }
    });
    assert_eq!(count, 0, "allocations while encoding 1000 PUBLISH packets");
}
