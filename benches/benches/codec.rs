//! PUBLISH decode and encode, Outpost's codec against `mqttbytes` 0.6 (the crate it replaces), in the
//! same run, for MQTT 3.1.1 and 5.0 at 16 B, 1 KiB and 64 KiB payloads.
//!
//! What each side does per iteration, so the comparison is fair:
//! - decode/mqttbytes: `read(&mut BytesMut)` → an owned `Publish` (topic `String`, payload `Bytes`).
//! - decode/outpost-borrowed: `decode(&[u8])` → a `Publish<'_>` borrowing the buffer (what a listener
//!   uses for routing; no allocation).
//! - decode/outpost-owned: `split_frame(&mut BytesMut)` + `decode` + `PublishBytes` — the same owned
//!   result mqttbytes gives, sharing the read buffer instead of copying the topic.
//! - encode/*: the packet into a reused buffer (`BytesMut` for mqttbytes, `&mut [u8]` and `BytesMut`
//!   for Outpost).
//!
//! The input `BytesMut` for the decoders is prepared outside the timed section (`iter_batched`).

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use outpost_codec::{decode, split_frame, Decoded, Packet, Publish, PublishBytes, QoS, Version};

const TOPIC: &str = "sensors/device-42/temperature";
const SIZES: [usize; 3] = [16, 1024, 64 * 1024];
const MAX: usize = 1 << 20;

fn ours(payload: &[u8]) -> Publish<'_> {
    Publish {
        qos: QoS::AtLeastOnce,
        pkid: 17,
        ..Publish::new(TOPIC, payload)
    }
}

fn frame(version: Version, payload: &[u8]) -> Vec<u8> {
    let p = Packet::Publish(ours(payload));
    let mut buf = vec![0u8; p.encoded_len(version).expect("fits")];
    p.encode(version, &mut buf).expect("encodes");
    buf
}

fn bench_decode(c: &mut Criterion) {
    for (version, name) in [(Version::V311, "v311"), (Version::V5, "v5")] {
        let mut group = c.benchmark_group(format!("decode_publish_{name}"));
        for size in SIZES {
            let payload = vec![0xA5u8; size];
            let wire = frame(version, &payload);
            group.throughput(Throughput::Bytes(wire.len() as u64));
            let input = || BytesMut::from(&wire[..]);

            group.bench_with_input(
                BenchmarkId::new("mqttbytes", size),
                &size,
                |b, _| match version {
                    Version::V311 => b.iter_batched_ref(
                        input,
                        |buf| mqttbytes::v4::read(buf, MAX).expect("decodes"),
                        BatchSize::SmallInput,
                    ),
                    Version::V5 => b.iter_batched_ref(
                        input,
                        |buf| mqttbytes::v5::read(buf, MAX).expect("decodes"),
                        BatchSize::SmallInput,
                    ),
                },
            );
            group.bench_with_input(BenchmarkId::new("outpost-borrowed", size), &size, |b, _| {
                b.iter(|| match decode(criterion::black_box(&wire), version, MAX) {
                    Ok(Decoded::Packet(Packet::Publish(p), _)) => p.payload.len(),
                    _ => unreachable!("bench input is a PUBLISH"),
                })
            });
            group.bench_with_input(BenchmarkId::new("outpost-owned", size), &size, |b, _| {
                b.iter_batched_ref(
                    input,
                    |buf| {
                        let frame: Bytes = split_frame(buf, MAX).expect("valid").expect("complete");
                        match decode(&frame, version, MAX) {
                            Ok(Decoded::Packet(Packet::Publish(p), _)) => {
                                PublishBytes::from_publish(&frame, &p)
                            }
                            _ => unreachable!("bench input is a PUBLISH"),
                        }
                    },
                    BatchSize::SmallInput,
                )
            });
        }
        group.finish();
    }
}

fn bench_encode(c: &mut Criterion) {
    for (version, name) in [(Version::V311, "v311"), (Version::V5, "v5")] {
        let mut group = c.benchmark_group(format!("encode_publish_{name}"));
        for size in SIZES {
            let payload = vec![0xA5u8; size];
            let wire_len = frame(version, &payload).len();
            group.throughput(Throughput::Bytes(wire_len as u64));

            let shared = Bytes::from(payload.clone());
            let mut out = BytesMut::with_capacity(wire_len * 2);
            group.bench_with_input(
                BenchmarkId::new("mqttbytes", size),
                &size,
                |b, _| match version {
                    Version::V311 => {
                        let mut p = mqttbytes::v4::Publish::from_bytes(
                            TOPIC,
                            mqttbytes::QoS::AtLeastOnce,
                            shared.clone(),
                        );
                        p.pkid = 17;
                        b.iter(|| {
                            out.clear();
                            p.write(&mut out).expect("encodes")
                        })
                    }
                    Version::V5 => {
                        let mut p = mqttbytes::v5::Publish::from_bytes(
                            TOPIC,
                            mqttbytes::QoS::AtLeastOnce,
                            shared.clone(),
                        );
                        p.pkid = 17;
                        b.iter(|| {
                            out.clear();
                            p.write(&mut out).expect("encodes")
                        })
                    }
                },
            );

            let packet = Packet::Publish(ours(&payload));
            let mut slice = vec![0u8; wire_len];
            group.bench_with_input(BenchmarkId::new("outpost-slice", size), &size, |b, _| {
                b.iter(|| packet.encode(version, &mut slice).expect("encodes"))
            });
            group.bench_with_input(BenchmarkId::new("outpost-bufmut", size), &size, |b, _| {
                b.iter(|| {
                    out.clear();
                    packet.encode_to(version, &mut out).expect("encodes")
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench_decode, bench_encode
}
criterion_main!(benches);
