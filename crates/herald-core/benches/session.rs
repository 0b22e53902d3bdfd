//! The cost of one state-machine step: an event frame in, an event out.
//!
//! Run with: `cargo bench -p herald-core --bench session`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use herald_core::{AuthMode, Instant, Output, Session, SessionConfig, SubscribeOptions};

fn connected_session(topics: usize) -> (Session, herald_core::ConnectionId) {
    let mut config = SessionConfig::new("ws://127.0.0.1:9/ws");
    config.auth = AuthMode::None;
    let now = Instant::now();
    let mut session = Session::new(config, now);
    for n in 0..topics {
        session.subscribe(now, format!("gift-list:{n}").parse().unwrap(), SubscribeOptions::default()).unwrap();
    }
    session.handle_timeout(now);
    let id = std::iter::from_fn(|| session.poll_output())
        .find_map(|o| match o {
            Output::Connect { id, .. } => Some(id),
            _ => None,
        })
        .unwrap();
    session.handle_open(now, id);
    while session.poll_output().is_some() {}
    (session, id)
}

fn step(c: &mut Criterion) {
    // Without `seq`, so the duplicate check lets every repetition through.
    let frame = r#"{"topic":"gift-list:7","event":"UPDATED","data":{"entity_id":"gift-7","payload":{"n":1},"timestamp":"2026-11-25T10:00:00Z"}}"#;
    let mut group = c.benchmark_group("session");
    group.throughput(Throughput::Elements(1));
    for topics in [1, 1000] {
        group.bench_function(format!("handle_frame event, {topics} subscriptions"), |b| {
            let (mut session, id) = connected_session(topics);
            let now = Instant::now();
            b.iter(|| {
                session.handle_frame(now, id, black_box(frame));
                while let Some(output) = session.poll_output() {
                    black_box(output);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
