//! The rich fixture's generated Rust: it compiles (this file would not
//! otherwise), its messages round-trip through protobuf and the bridge's
//! proto3 JSON unchanged, and that JSON follows the proto3 mapping.

use prost::Message;
use serde_json::{Value, json};
use wsgrpc_runtime::json::{json_to_proto, proto_to_json};
use wsgrpc_runtime::{JsonOptions, MethodKind, TranscodeError};
use wsgrpc_tests::rich::common::v1 as common;
use wsgrpc_tests::rich::shop::v1 as shop;
use wsgrpc_tests::{full_order, rich_message};

/// The bridge's JSON for a message of the fixture.
fn to_json<M: Message>(full_name: &str, message: &M) -> Value {
    let json = proto_to_json(
        &rich_message(full_name),
        &message.encode_to_vec(),
        &JsonOptions::canonical(),
    )
    .unwrap();
    serde_json::from_str(json.get()).unwrap()
}

/// What the bridge makes of JSON for a message of the fixture.
fn from_json<M: Message + Default>(full_name: &str, json: &Value) -> Result<M, TranscodeError> {
    let proto = json_to_proto(&rich_message(full_name), &json.to_string())?;
    Ok(M::decode(proto).unwrap())
}

#[test]
fn a_full_order_round_trips_through_protobuf_and_json() {
    let order = full_order();
    let decoded = shop::Order::decode(order.encode_to_vec().as_slice()).unwrap();
    assert_eq!(decoded.encode_to_vec().len(), order.encode_to_vec().len());

    // The bridge's own path: protobuf → JSON → protobuf → JSON.
    let json = to_json("rich.shop.v1.Order", &order);
    let back: shop::Order = from_json("rich.shop.v1.Order", &json).unwrap();
    // NaN is not equal to itself: compare the rest, and NaN by its bits.
    let nan_bits = |order: &shop::Order| {
        order
            .well_known
            .as_ref()
            .unwrap()
            .maybe_float
            .unwrap()
            .to_bits()
    };
    assert_eq!(nan_bits(&back), nan_bits(&order));
    let without_nan = |mut order: shop::Order| {
        order.well_known.as_mut().unwrap().maybe_float = None;
        order
    };
    assert_eq!(without_nan(back.clone()), without_nan(order), "{json}");
    assert_eq!(to_json("rich.shop.v1.Order", &back), json);
}

#[test]
fn json_follows_the_proto3_mapping() {
    let json = to_json("rich.shop.v1.Order", &full_order());
    assert_eq!(json["state"], "STATE_SHIPPED", "enums by name");
    assert_eq!(
        json["totalsByCurrency"]["EUR"]["units"], "6",
        "64-bit as strings, camelCase keys"
    );
    assert_eq!(
        json["linesByNumber"]["-7"]["quantity"], 3,
        "map keys as strings"
    );
    assert_eq!(
        json["voucher"], "AAEC+g==",
        "bytes as base64, oneof members flat"
    );
    assert_eq!(
        json["note"], "",
        "optional fields appear when set, even to the default"
    );
    let scalars = &json["scalars"];
    assert_eq!(scalars["fUint64"], "18446744073709551615");
    assert_eq!(scalars["fSint64"], "-9223372036854775808");
    assert_eq!(scalars["rInt64"], json!(["1", "-2", "9223372036854775807"]));
    assert_eq!(scalars["oUint64"], "0");
    assert_eq!(scalars["mBoolBytes"]["true"], "AQ==");
    let wkt = &json["wellKnown"];
    // In UTC with `Z`, as the proto3 JSON mapping writes it.
    assert_eq!(wkt["createdAt"], "2023-11-14T22:13:20.123Z");
    assert_eq!(wkt["ttl"], "90.500s");
    assert_eq!(wkt["attributes"], json!({"color": "red"}));
    assert_eq!(wkt["anyValue"], 2.5);
    assert_eq!(wkt["list"], json!([true, "x", null]));
    assert_eq!(wkt["maybeName"], "");
    assert_eq!(wkt["maybeCount"], "9223372036854775807");
    assert_eq!(wkt["maybeFlag"], false);
    assert_eq!(wkt["maybeBytes"], "CQk=");
    assert_eq!(wkt["mask"], "scalars.fInt64,note");
    assert_eq!(wkt["nothing"], json!({}));
    assert_eq!(
        wkt["payload"],
        json!({"@type": "type.googleapis.com/rich.common.v1.Money", "currencyCode": "EUR", "units": "7", "nanos": 500000000}),
        "Any as the embedded message with its @type"
    );
    assert_eq!(wkt["maybeFloat"], "NaN");
    assert_eq!(wkt["maybeUint64"], "18446744073709551615");
    assert_eq!(wkt["values"], json!([null]));
    assert_eq!(wkt["history"], json!(["0001-01-01T00:00:00Z"]));
    let maps = &json["maps"];
    assert_eq!(maps["byInt32"], json!({"-2147483648": "min"}));
    assert_eq!(
        maps["byUint64"],
        json!({"18446744073709551615": "Infinity"})
    );
    assert_eq!(maps["bySint32"], json!({"-1": "AVAILABILITY_IN_STOCK"}));
    assert_eq!(maps["bySfixed64"], json!({"9": "-1.000000001s"}));
    assert_eq!(
        maps["byBool"],
        json!({"false": {"currencyCode": "EUR", "nanos": 500000000}})
    );
    assert_eq!(json["keywords"]["type"], "t");
    assert_eq!(json["keywords"]["self"], 1);
}

#[test]
fn input_accepts_both_spellings_numbers_for_64_bit_and_enum_numbers() {
    let order: shop::Order = from_json(
        "rich.shop.v1.Order",
        &json!({
            "id": "x",
            "state": 1,
            "card_token": "tok",
            "scalars": {"f_int64": 42, "fUint64": "7", "fDouble": "NaN"},
            "wellKnown": {"createdAt": "1970-01-01T00:00:01Z"}
        }),
    )
    .unwrap();
    assert_eq!(order.state, shop::order::State::Open as i32);
    assert_eq!(
        order.payment,
        Some(shop::order::Payment::CardToken("tok".into()))
    );
    let scalars = order.scalars.unwrap();
    assert_eq!((scalars.f_int64, scalars.f_uint64), (42, 7));
    assert!(scalars.f_double.is_nan());
    assert_eq!(order.well_known.unwrap().created_at.unwrap().seconds, 1);
}

/// The first finding of the issue: a `null` in a Struct's list reached the
/// backend as an empty Value.
#[test]
fn a_null_in_a_struct_reaches_the_backend_as_null_value() {
    let well_known: shop::WellKnown = from_json(
        "rich.shop.v1.WellKnown",
        &json!({"attributes": {"list": [1, "x", null, true]}}),
    )
    .unwrap();
    let attributes = well_known.attributes.unwrap();
    let Some(prost_types::value::Kind::ListValue(list)) = &attributes.fields["list"].kind else {
        panic!("{attributes:?}")
    };
    assert_eq!(
        list.values[2].kind,
        Some(prost_types::value::Kind::NullValue(0))
    );
}

#[test]
fn any_is_read_in_its_canonical_form_from_any_package_of_the_bridge() {
    let well_known: shop::WellKnown = from_json(
        "rich.shop.v1.WellKnown",
        &json!({"payload": {"units": "3", "@type": "type.googleapis.com/rich.common.v1.Money"}}),
    )
    .unwrap();
    let payload = well_known.payload.unwrap();
    assert_eq!(payload.type_url, "type.googleapis.com/rich.common.v1.Money");
    assert_eq!(
        common::Money::decode(payload.value.as_slice())
            .unwrap()
            .units,
        3
    );

    let wrapped: shop::WellKnown = from_json(
        "rich.shop.v1.WellKnown",
        &json!({"payload": {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "1s"}}),
    )
    .unwrap();
    assert_eq!(
        prost_types::Duration::decode(wrapped.payload.unwrap().value.as_slice()).unwrap(),
        prost_types::Duration {
            seconds: 1,
            nanos: 0
        }
    );

    let err = from_json::<shop::WellKnown>(
        "rich.shop.v1.WellKnown",
        &json!({"payload": {"@type": "type.googleapis.com/no.Such"}}),
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("field `payload`"), "{err}");
}

#[test]
fn names_from_two_packages_and_keywords_stay_apart() {
    let shop_item = shop::Item {
        name: "n".into(),
        common: Some(common::Item { sku: "s".into() }),
        availability: common::Availability::SoldOut as i32,
    };
    assert_eq!(
        to_json("rich.shop.v1.Item", &shop_item),
        json!({"name": "n", "common": {"sku": "s"}, "availability": "AVAILABILITY_SOLD_OUT"})
    );
    let keyword_message = common::Self_ { r#type: "x".into() };
    assert_eq!(
        to_json("rich.common.v1.Self", &keyword_message),
        json!({"type": "x"})
    );
}

#[test]
fn bridge_tables_list_every_method_with_its_kind() {
    let shop = shop::shop_bridge::service();
    assert_eq!(shop.name(), "rich.shop.v1.Shop");
    let kinds: Vec<_> = shop
        .methods()
        .iter()
        .map(|m| (m.name(), m.kind()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("GetOrder", MethodKind::Unary),
            ("WatchOrders", MethodKind::ServerStreaming),
            ("UploadItems", MethodKind::ClientStreaming),
            ("Haggle", MethodKind::BidiStreaming),
        ]
    );
    assert_eq!(
        shop::shop_bridge::WATCH_ORDERS,
        "rich.shop.v1.Shop/WatchOrders"
    );
    assert_eq!(shop::catalog_bridge::MATCH, "rich.shop.v1.Catalog/Match");
    // A method whose constant would take the service's name is escaped.
    assert_eq!(shop::catalog_bridge::SERVICE_NAME, "rich.shop.v1.Catalog");
    assert_eq!(
        shop::catalog_bridge::SERVICE_NAME_,
        "rich.shop.v1.Catalog/ServiceName"
    );

    // The table's transcoders are those of the right types.
    let get_order = &shop.methods()[0];
    let proto = get_order
        .decode_request(r#"{"id":"o-9","readMask":"lines,note"}"#)
        .unwrap();
    let request = shop::GetOrderRequest::decode(proto).unwrap();
    assert_eq!(request.read_mask.unwrap().paths, ["lines", "note"]);
    let response = get_order
        .encode_response(&full_order().encode_to_vec())
        .unwrap();
    assert!(
        response
            .get()
            .starts_with(r#"{"id":"o-1","state":"STATE_SHIPPED""#)
    );
    let err = get_order.decode_request(r#"{"readMask": 5}"#).unwrap_err();
    assert!(err.to_string().starts_with("field `readMask`"), "{err}");
}
