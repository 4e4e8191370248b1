//! Any JSON payload decodes into a request type or is refused. A payload
//! that decodes survives protobuf → proto3 JSON → protobuf unchanged.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use wsgrpc_runtime::JsonOptions;
use wsgrpc_runtime::json::{json_to_proto, proto_to_json};
use wsgrpc_runtime::prost_reflect::{DynamicMessage, MessageDescriptor};

static REQUESTS: LazyLock<Vec<MessageDescriptor>> =
    LazyLock::new(|| wsgrpc_fuzz::messages(wsgrpc_fuzz::REQUESTS));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for descriptor in REQUESTS.iter() {
        round_trip(descriptor, text);
    }
});

fn round_trip(descriptor: &MessageDescriptor, text: &str) {
    let Ok(first) = json_to_proto(descriptor, text) else {
        return;
    };
    let name = descriptor.full_name();
    let json = proto_to_json(descriptor, &first, &JsonOptions::canonical())
        .unwrap_or_else(|err| panic!("{name}: accepted {text:?}, but has no JSON form: {err}"));
    let second = json_to_proto(descriptor, json.get()).unwrap_or_else(|err| {
        panic!("{name}: accepted {text:?}, but refuses its own JSON {json}: {err}")
    });
    if first == second {
        return;
    }
    // Map entries may be encoded in another order: compare the messages.
    // NaN never equals itself, so messages holding it are not compared.
    if json.get().contains("\"NaN\"") {
        return;
    }
    let decode = |proto: &[u8]| DynamicMessage::decode(descriptor.clone(), proto);
    let (a, b) = (decode(&first), decode(&second));
    assert!(
        matches!((&a, &b), (Ok(a), Ok(b)) if a == b),
        "{name}: {text:?} changed through JSON {json}\nfirst:  {first:?}\nsecond: {second:?}"
    );
}
