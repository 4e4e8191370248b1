//! What the fuzz targets share: the messages of the test service and of the
//! rich fixture, by descriptor, as the bridge transcodes them.

use wsgrpc_runtime::prost_reflect::{DescriptorPool, MessageDescriptor};

/// Request types, as clients send them.
pub const REQUESTS: &[&str] = &[
    "wsgrpc.test.v1.TestRequest",
    "rich.shop.v1.Order",
    "rich.shop.v1.Scalars",
    "rich.shop.v1.WellKnown",
    "rich.shop.v1.Maps",
    "rich.shop.v1.GetOrderRequest",
    "rich.shop.v1.WatchOrdersRequest",
    "rich.shop.v1.Item",
    "rich.common.v1.Self",
];

/// Response types, as backends send them.
pub const RESPONSES: &[&str] = &[
    "wsgrpc.test.v1.TestResponse",
    "rich.shop.v1.Order",
    "rich.shop.v1.Scalars",
    "rich.shop.v1.WellKnown",
    "rich.shop.v1.Maps",
    "rich.shop.v1.UploadSummary",
    "rich.shop.v1.Offer",
    "rich.common.v1.Item",
];

/// The descriptors of every message named above, from the generated code.
pub fn messages(names: &[&str]) -> Vec<MessageDescriptor> {
    let pool = pool();
    names
        .iter()
        .map(|name| {
            pool.get_message_by_name(name)
                .unwrap_or_else(|| panic!("no message {name}"))
        })
        .collect()
}

/// Every message of the test service and of the rich fixture, and every
/// one they reach (the well-known types among them), but map entries.
pub fn every_message() -> Vec<MessageDescriptor> {
    pool()
        .all_messages()
        .filter(|message| !message.is_map_entry())
        .collect()
}

fn pool() -> DescriptorPool {
    let mut pool: DescriptorPool =
        wsgrpc_runtime::Descriptors::new(wsgrpc_tests::rich::shop::v1::FILE_DESCRIPTOR_SET)
            .pool()
            .clone();
    pool.decode_file_descriptor_set(wsgrpc_tests::test_v1::FILE_DESCRIPTOR_SET)
        .expect("generated descriptors decode");
    pool
}
