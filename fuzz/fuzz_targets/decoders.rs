//! Any JSON payload decodes into a generated request type or is refused.
//! A payload that decodes survives protobuf → proto3 JSON → protobuf with
//! the same protobuf encoding.

#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wsgrpc_fuzz::Representable;
use wsgrpc_runtime::{json_to_proto, proto_to_json};
use wsgrpc_tests::rich::common::v1 as common;
use wsgrpc_tests::rich::shop::v1 as shop;
use wsgrpc_tests::test_v1;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    round_trip::<test_v1::TestRequest>(text);
    round_trip::<shop::Order>(text);
    round_trip::<shop::Scalars>(text);
    round_trip::<shop::WellKnown>(text);
    round_trip::<shop::GetOrderRequest>(text);
    round_trip::<shop::WatchOrdersRequest>(text);
    round_trip::<shop::Item>(text);
    round_trip::<common::Self_>(text);
});

fn round_trip<M>(text: &str)
where
    M: Message + Default + Serialize + DeserializeOwned + PartialEq + Debug + Representable,
{
    let Ok(first) = json_to_proto::<M>(text) else {
        return;
    };
    let name = std::any::type_name::<M>();
    let json = proto_to_json::<M>(&first)
        .unwrap_or_else(|err| panic!("{name}: accepted {text:?}, but has no JSON form: {err}"));
    let second = json_to_proto::<M>(json.get()).unwrap_or_else(|err| {
        panic!("{name}: accepted {text:?}, but refuses its own JSON {json}: {err}")
    });
    if first == second {
        return;
    }
    // NaN never equals itself (see `Representable`): such messages cannot
    // be compared below.
    if !M::decode(first.as_ref()).is_ok_and(|message| message.representable()) {
        return;
    }
    // Maps are HashMaps, so two decodes of one JSON object may encode their
    // entries in different orders: compare the messages instead (no NaN in
    // them, see above).
    let (a, b) = (M::decode(first.as_ref()), M::decode(second.as_ref()));
    assert!(
        matches!((&a, &b), (Ok(a), Ok(b)) if a == b),
        "{name}: {text:?} changed through JSON {json}\nfirst:  {first:?}\nsecond: {second:?}\n{a:?}\n{b:?}"
    );
}
