//! Any bytes a backend sends as a response render as proto3 JSON or are
//! refused; JSON the bridge renders, it reads back.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use wsgrpc_runtime::JsonOptions;
use wsgrpc_runtime::json::{json_to_proto, proto_to_json};
use wsgrpc_runtime::prost_reflect::MessageDescriptor;

static RESPONSES: LazyLock<Vec<MessageDescriptor>> =
    LazyLock::new(|| wsgrpc_fuzz::messages(wsgrpc_fuzz::RESPONSES));

fuzz_target!(|data: &[u8]| {
    for descriptor in RESPONSES.iter() {
        let Ok(json) = proto_to_json(descriptor, data, &JsonOptions::canonical()) else {
            continue;
        };
        if let Err(err) = json_to_proto(descriptor, json.get()) {
            let name = descriptor.full_name();
            panic!("{name}: rendered {data:?} as {json}, which it refuses: {err}");
        }
    }
});
