//! Micro-benchmarks of the bridge's per-frame work: parsing an envelope,
//! writing one, and transcoding messages of several sizes between proto3
//! JSON and protobuf. Run with `cargo bench -p wsgrpc-bench`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use wsgrpc_example::proto::{CollectResponse, HelloRequest};
use wsgrpc_runtime::envelope::Envelope;
use wsgrpc_runtime::{json_to_proto, proto_to_json};

fn envelope(c: &mut Criterion) {
    let text = r#"{"type":"request","method":"example.ExampleService/SayHello","id":"req_12345","payload":{"name":"World"}}"#;
    c.bench_function("envelope/parse", |b| {
        b.iter(|| Envelope::parse(std::hint::black_box(text)).unwrap())
    });
    let frame = Envelope::parse(text).unwrap();
    c.bench_function("envelope/write", |b| {
        b.iter(|| std::hint::black_box(&frame).to_json())
    });
}

fn transcode(c: &mut Criterion) {
    let mut group = c.benchmark_group("transcode");
    for size in [16, 256, 4096, 65536] {
        let name = "x".repeat(size);
        let json = serde_json::to_string(&HelloRequest { name: name.clone() }).unwrap();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("json_to_proto", size), &json, |b, json| {
            b.iter(|| json_to_proto::<HelloRequest>(json).unwrap())
        });
        let proto = CollectResponse {
            count: 3,
            joined: name,
        }
        .encode_to_vec();
        group.bench_with_input(
            BenchmarkId::new("proto_to_json", size),
            &proto,
            |b, proto| b.iter(|| proto_to_json::<CollectResponse>(proto).unwrap()),
        );
    }
    group.finish();
}

criterion_group!(benches, envelope, transcode);
criterion_main!(benches);
