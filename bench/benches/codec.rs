//! Micro-benchmarks of the bridge's per-frame work: parsing an envelope,
//! writing one, and transcoding messages between proto3 JSON and protobuf:
//! one string field of several sizes, and an order of the rich fixture with
//! most kinds of field. Run with `cargo bench -p wsgrpc-bench --bench codec`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use wsgrpc_example::proto::{CollectResponse, example_service_bridge};
use wsgrpc_runtime::envelope::Envelope;
use wsgrpc_runtime::json::JsonWriter;
use wsgrpc_runtime::prost_reflect::{DynamicMessage, MessageDescriptor, SerializeOptions};
use wsgrpc_runtime::{JsonOptions, json};
use wsgrpc_tests::{full_order, rich_message};

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
    let service = example_service_bridge::service();
    // SayHello takes a HelloRequest; CollectMessages answers a CollectResponse.
    let say_hello = &service.methods()[0];
    let collect = &service.methods()[2];
    let mut group = c.benchmark_group("transcode");
    for size in [16, 256, 4096, 65536] {
        let name = "x".repeat(size);
        let json = serde_json::json!({ "name": name }).to_string();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("json_to_proto", size), &json, |b, json| {
            b.iter(|| say_hello.decode_request(json).unwrap())
        });
        let proto = CollectResponse {
            count: 3,
            joined: name,
        }
        .encode_to_vec();
        group.bench_with_input(
            BenchmarkId::new("proto_to_json", size),
            &proto,
            |b, proto| b.iter(|| collect.encode_response(proto).unwrap()),
        );
        group.bench_with_input(
            BenchmarkId::new("proto_to_json_appended", size),
            &proto,
            |b, proto| {
                let mut out = Vec::new();
                b.iter(|| {
                    out.clear();
                    collect.write_response(proto, &mut out).unwrap();
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("proto_to_json_dynamic", size),
            &proto,
            |b, proto| b.iter(|| dynamic_json(collect.output(), proto)),
        );
    }
    group.finish();
}

/// The rich fixture's order as it was before Any, the other wrappers and
/// the maps of every key type joined the fixture, so that figures compare
/// with those of earlier engines.
fn order(c: &mut Criterion) {
    let mut order = full_order();
    order.maps = None;
    let well_known = order.well_known.as_mut().unwrap();
    well_known.payload = None;
    well_known.maybe_float = None;
    well_known.maybe_int32 = None;
    well_known.maybe_uint32 = None;
    well_known.maybe_uint64 = None;
    well_known.values.clear();
    well_known.history.clear();
    well_known.list.as_mut().unwrap().values.pop();
    let descriptor = rich_message("rich.shop.v1.Order");
    let proto = order.encode_to_vec();
    let options = JsonOptions::canonical();
    let writer = JsonWriter::new(&descriptor);
    let text = writer.to_json(&proto, &options).unwrap();
    let text = text.get();
    eprintln!(
        "order: {} bytes of protobuf, {} of JSON",
        proto.len(),
        text.len()
    );
    c.bench_function("order/json_to_proto", |b| {
        b.iter(|| json::json_to_proto(&descriptor, text).unwrap())
    });
    c.bench_function("order/proto_to_json", |b| {
        b.iter(|| writer.to_json(&proto, &options).unwrap())
    });
    c.bench_function("order/proto_to_json_dynamic", |b| {
        b.iter(|| dynamic_json(&descriptor, &proto))
    });
    let defaults = JsonOptions::canonical().emit_defaults(true);
    c.bench_function("order/proto_to_json_with_defaults", |b| {
        b.iter(|| writer.to_json(&proto, &defaults).unwrap())
    });
}

/// The way through a decoded message, as a baseline: what the bridge did
/// for every response before it wrote JSON straight from protobuf.
fn dynamic_json(descriptor: &MessageDescriptor, proto: &[u8]) -> String {
    let message = DynamicMessage::decode(descriptor.clone(), proto).unwrap();
    let mut json = serde_json::Serializer::new(Vec::new());
    message
        .serialize_with_options(&mut json, &SerializeOptions::new())
        .unwrap();
    String::from_utf8(json.into_inner()).unwrap()
}

criterion_group!(benches, envelope, transcode, order);
criterion_main!(benches);
