//! Any bytes a backend sends as a response render as proto3 JSON or are
//! refused; JSON the bridge renders, it reads back.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wsgrpc_runtime::{json_to_proto, proto_to_json};
use wsgrpc_tests::rich::common::v1 as common;
use wsgrpc_tests::rich::shop::v1 as shop;
use wsgrpc_tests::test_v1;

fuzz_target!(|data: &[u8]| {
    render::<test_v1::TestResponse>(data);
    render::<shop::Order>(data);
    render::<shop::Scalars>(data);
    render::<shop::WellKnown>(data);
    render::<shop::UploadSummary>(data);
    render::<shop::Offer>(data);
    render::<common::Item>(data);
});

fn render<M>(proto: &[u8])
where
    M: Message + Default + Serialize + DeserializeOwned,
{
    let Ok(json) = proto_to_json::<M>(proto) else {
        return;
    };
    let name = std::any::type_name::<M>();
    if let Err(err) = json_to_proto::<M>(json.get()) {
        panic!("{name}: rendered {proto:?} as {json}, which it refuses: {err}");
    }
}
