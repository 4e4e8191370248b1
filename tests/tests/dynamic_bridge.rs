//! The rich fixture served two ways — by the table that wsgrpc-gen
//! generates and by the one wsgrpc-bridge builds at run time from protoc's
//! descriptor set — reads the same JSON into the same protobuf and writes
//! the same JSON for the same protobuf. The entries of a map field may come
//! in another order, both in JSON and on the wire: prost-reflect keeps them
//! in a HashMap.

use std::path::Path;

use base64::Engine;
use prost::Message;
use serde_json::Value;
use wsgrpc_runtime::json::{json_to_proto, proto_to_json};
use wsgrpc_runtime::prost_reflect::MessageDescriptor;
use wsgrpc_runtime::{JsonOptions, Method, Service};
use wsgrpc_tests::rich::shop::v1 as shop;
use wsgrpc_tests::{full_order, protoc_descriptor_set};

fn descriptor_set_services(dir: &Path) -> Vec<Service> {
    let set = protoc_descriptor_set(
        dir,
        "proto/fixtures",
        &["rich/shop/v1/shop.proto", "rich/common/v1/common.proto"],
    );
    let pool = wsgrpc_bridge::descriptors::read_pool(&set).unwrap();
    wsgrpc_bridge::descriptors::services(&pool, &[]).unwrap()
}

/// Pairs of the same method, generated and loaded.
fn method_pairs() -> Vec<(Method, Method)> {
    let dir = tempfile::tempdir().unwrap();
    let loaded = descriptor_set_services(dir.path());
    let generated = [
        shop::shop_bridge::service(),
        shop::catalog_bridge::service(),
    ];
    let mut pairs = Vec::new();
    for service in &generated {
        let twin = loaded
            .iter()
            .find(|other| other.name() == service.name())
            .unwrap_or_else(|| panic!("the descriptor set lacks {}", service.name()));
        assert_eq!(twin.methods().len(), service.methods().len());
        for method in service.methods() {
            let other = twin
                .methods()
                .iter()
                .find(|other| other.name() == method.name())
                .unwrap_or_else(|| panic!("the descriptor set lacks {}", method.name()));
            assert_eq!(other.kind(), method.kind(), "{}", method.name());
            pairs.push((method.clone(), other.clone()));
        }
    }
    assert_eq!(loaded.len(), generated.len(), "no other services");
    pairs
}

fn corpus() -> Vec<Value> {
    let text = include_str!("../reference/corpus.json");
    let corpus: Value = serde_json::from_str(text).unwrap();
    corpus["cases"].as_array().unwrap().clone()
}

fn option_sets() -> [JsonOptions; 3] {
    [
        JsonOptions::canonical(),
        JsonOptions::canonical().emit_defaults(true),
        JsonOptions::canonical()
            .enum_numbers(true)
            .proto_field_names(true),
    ]
}

fn assert_writes_alike(generated: &Method, loaded: &Method, proto: &[u8]) {
    for options in option_sets() {
        let a = generated.encode_response_with(proto, &options);
        let b = loaded.encode_response_with(proto, &options);
        match (a, b) {
            // Compared as values: prost-reflect keeps a map field in a
            // HashMap, so two messages may list the same entries in
            // different orders.
            (Ok(a), Ok(b)) => assert_eq!(
                serde_json::from_str::<Value>(a.get()).unwrap(),
                serde_json::from_str::<Value>(b.get()).unwrap(),
                "{}",
                generated.name()
            ),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (a, b) => panic!("{}: {a:?} vs {b:?}", generated.name()),
        }
    }
}

/// A message's content, whatever the order of its map entries on the wire:
/// its JSON as a value. (Comparing decoded messages would fail on NaN.)
fn content(descriptor: &MessageDescriptor, proto: &[u8]) -> Value {
    let json = proto_to_json(descriptor, proto, &JsonOptions::canonical()).unwrap();
    serde_json::from_str(json.get()).unwrap()
}

#[test]
fn generated_and_loaded_tables_read_and_write_alike() {
    let pairs = method_pairs();
    let order = full_order().encode_to_vec();
    let mut compared = 0;
    for (generated, loaded) in &pairs {
        assert_eq!(generated.input().full_name(), loaded.input().full_name());
        assert_eq!(generated.output().full_name(), loaded.output().full_name());
        assert_writes_alike(generated, loaded, &[]);
        compared += 1;
        if generated.output().full_name() != "rich.shop.v1.Order" {
            continue;
        }
        assert_writes_alike(generated, loaded, &order);
        for case in corpus() {
            match case["kind"].as_str().unwrap() {
                "read" => {
                    // Read as a request of a method taking an Order: there is
                    // none, so read with the output descriptor through JSON.
                    let json = case["json"].as_str().unwrap();
                    let a = json_to_proto(generated.output(), json);
                    let b = json_to_proto(loaded.output(), json);
                    match (a, b) {
                        (Ok(a), Ok(b)) => {
                            let output = generated.output();
                            assert_eq!(content(output, &a), content(output, &b), "{json}");
                            assert_writes_alike(generated, loaded, &a);
                        }
                        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                        (a, b) => panic!("{json}: {a:?} vs {b:?}"),
                    }
                }
                "write" => {
                    let proto = base64::engine::general_purpose::STANDARD
                        .decode(case["proto"].as_str().unwrap())
                        .unwrap();
                    assert_writes_alike(generated, loaded, &proto);
                }
                other => panic!("unknown corpus kind {other}"),
            }
            compared += 1;
        }
    }
    assert!(compared > 40, "compared {compared}");
}

#[test]
fn requests_are_read_alike() {
    for (generated, loaded) in method_pairs() {
        for json in [
            "{}",
            r#"{"orderId":"o-1","unknownField":1}"#,
            r#"{"name":"n","availability":2}"#,
        ] {
            let a = generated.decode_request(json);
            let b = loaded.decode_request(json);
            match (a, b) {
                (Ok(a), Ok(b)) => assert_eq!(
                    content(generated.input(), &a),
                    content(generated.input(), &b),
                    "{} {json}",
                    generated.name()
                ),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                (a, b) => panic!("{} {json}: {a:?} vs {b:?}", generated.name()),
            }
        }
    }
}
