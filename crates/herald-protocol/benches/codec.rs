//! Decoding and encoding costs, next to plain `serde_json` on the same bytes.
//!
//! Run with: `cargo bench -p herald-protocol --bench codec`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use herald_protocol::{ClientMessage, ServerMessage};

const EVENT: &str = r#"{"topic":"gift-list:family-123","event":"UPDATED","data":{"entity_id":"gift-7","payload":{"id":"gift-7","name":"Bicycle","price_cents":24900,"bought":true,"tags":["kids","outdoor"]},"user_id":"u-1","tenant_id":"acme","timestamp":"2026-11-25T10:00:00.123Z"},"trace_id":"4bf92f3577b34da6","seq":42}"#;

fn publish_frame() -> String {
    format!(r#"{{"type":"publish","id":"a1b2c3d4-17",{}"#, &EVENT[1..])
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("event");
    group.throughput(Throughput::Bytes(EVENT.len() as u64));
    group.bench_function("serde_json::Value (baseline)", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(EVENT)).unwrap())
    });
    group.bench_function("decode", |b| b.iter(|| ServerMessage::decode(black_box(EVENT)).unwrap()));
    group.bench_function("decode+validate", |b| {
        b.iter(|| match ServerMessage::decode(black_box(EVENT)).unwrap() {
            ServerMessage::Event(event) => event.validate().unwrap(),
            _ => unreachable!("the frame is an event"),
        })
    });
    let ServerMessage::Event(event) = ServerMessage::decode(EVENT).unwrap() else { unreachable!() };
    group.bench_function("encode", |b| b.iter(|| black_box(&event).encode()));
    group.finish();

    let publish = publish_frame();
    let mut group = c.benchmark_group("publish");
    group.throughput(Throughput::Bytes(publish.len() as u64));
    group.bench_function("decode+validate (server inbound)", |b| {
        b.iter(|| ClientMessage::decode(black_box(&publish)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
