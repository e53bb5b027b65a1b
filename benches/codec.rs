//! Micro-benchmarks of the hot path's sans-IO pieces: encoding and decoding a frame,
//! admitting it to the cache and passing it through a child's send queue.
//! Criterion writes its JSON estimates under `target/criterion/`.

use std::time::Instant;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use treecast_relay::proto::Limits;
use treecast_relay::proto::cache::GroupCache;
use treecast_relay::proto::group::{GroupDecoder, GroupHeader, encode_frame_header};
use treecast_relay::proto::media::Frame;
use treecast_relay::proto::send_queue::{QueueLimits, SendQueue};

fn frame(seq: u64) -> Frame {
    Frame {
        track: 0,
        group: seq / 60,
        seq,
        pts: seq * 33_333,
        dts: seq * 33_333,
        duration: 33_333,
        keyframe: seq.is_multiple_of(60),
        capture_us: 1_700_000_000_000_000 + seq,
        payload: Bytes::from(vec![7u8; 8333]),
        signature: None,
    }
}

fn bench(c: &mut Criterion) {
    let f = frame(123);
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Bytes(f.payload.len() as u64));
    g.bench_function("encode_header", |b| {
        b.iter(|| encode_frame_header(std::hint::black_box(&f)))
    });
    let mut wire = GroupHeader { track: 0, group: 2 }.to_bytes().to_vec();
    wire.extend_from_slice(&encode_frame_header(&f));
    wire.extend_from_slice(&f.payload);
    g.bench_function("decode", |b| {
        b.iter(|| {
            let mut d = GroupDecoder::new(&Limits::default());
            d.push(std::hint::black_box(&wire));
            d.next_frame()
        })
    });
    g.finish();

    let frames: Vec<Frame> = (0..600).map(frame).collect();
    let mut g = c.benchmark_group("forwarding");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("cache_admit_600", |b| {
        b.iter(|| {
            let mut cache = GroupCache::new(2);
            for f in &frames {
                cache.admit(f);
            }
        })
    });
    g.bench_function("send_queue_push_pop_600", |b| {
        let now = Instant::now();
        b.iter(|| {
            let mut q = SendQueue::new(QueueLimits::default());
            for f in &frames {
                q.push(now, f.clone());
                q.pop();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
