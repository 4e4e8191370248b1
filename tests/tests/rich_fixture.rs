//! The rich fixture's generated Rust: it compiles (this file would not
//! otherwise), its messages round-trip through protobuf and proto3 JSON
//! unchanged, and its JSON follows the proto3 mapping.

use std::collections::HashMap;

use prost::Message;
use serde_json::{Value, json};
use wsgrpc_runtime::MethodKind;
use wsgrpc_tests::rich::common::v1 as common;
use wsgrpc_tests::rich::shop::v1 as shop;

fn money(units: i64) -> common::Money {
    common::Money {
        currency_code: "EUR".into(),
        units,
        nanos: 500_000_000,
    }
}

fn full_order() -> shop::Order {
    let line = shop::order::Line {
        sku: "sku-1".into(),
        quantity: 3,
        price: Some(money(2)),
    };
    shop::Order {
        id: "o-1".into(),
        state: shop::order::State::Shipped as i32,
        lines: vec![line.clone()],
        totals_by_currency: HashMap::from([("EUR".into(), money(6))]),
        lines_by_number: HashMap::from([(-7, line.clone())]),
        payment: Some(shop::order::Payment::Voucher(vec![0, 1, 2, 250])),
        note: Some(String::new()),
        scalars: Some(shop::Scalars {
            f_double: 1.5,
            f_float: -0.25,
            f_int32: -32,
            f_int64: -9_007_199_254_740_993,
            f_uint32: 32,
            f_uint64: u64::MAX,
            f_sint32: -1,
            f_sint64: i64::MIN,
            f_fixed32: 7,
            f_fixed64: 1 << 60,
            f_sfixed32: -7,
            f_sfixed64: -(1 << 60),
            f_bool: true,
            f_string: "ünïcödé \"quoted\"".into(),
            f_bytes: b"\xff\x00bytes".to_vec(),
            r_int64: vec![1, -2, i64::MAX],
            r_double: vec![0.5, -1e300],
            o_uint64: Some(0),
            m_bool_bytes: HashMap::from([(true, vec![1]), (false, vec![])]),
        }),
        well_known: Some(shop::WellKnown {
            created_at: Some(wsgrpc_runtime::well_known::Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_000_000,
            }),
            ttl: Some(wsgrpc_runtime::well_known::Duration {
                seconds: 90,
                nanos: 500_000_000,
            }),
            attributes: Some(
                [("color".to_owned(), pbjson_types::Value::from("red"))]
                    .into_iter()
                    .collect(),
            ),
            any_value: Some(pbjson_types::Value::from(2.5)),
            // Not `null`: pbjson-types reads a JSON null inside a list as an
            // unset Value rather than NULL_VALUE, so it would not round-trip.
            list: Some(
                vec![
                    pbjson_types::Value::from(true),
                    pbjson_types::Value::from("x"),
                ]
                .into(),
            ),
            maybe_name: Some("".to_owned().into()),
            maybe_count: Some(pbjson_types::Int64Value { value: i64::MAX }),
            maybe_flag: Some(false.into()),
            maybe_bytes: Some(pbjson_types::BytesValue {
                value: vec![9, 9].into(),
            }),
            maybe_ratio: Some(0.75.into()),
            mask: Some(wsgrpc_runtime::well_known::FieldMask::new([
                "scalars.f_int64",
                "note",
            ])),
            nothing: Some(pbjson_types::Empty {}),
        }),
        keywords: Some(shop::Keywords {
            r#type: "t".into(),
            r#fn: "f".into(),
            self_: 1,
            r#async: true,
            r#match: "m".into(),
            function: "fun".into(),
            default: "d".into(),
            constructor: "c".into(),
        }),
    }
}

#[test]
fn a_full_order_round_trips_through_protobuf_and_json() {
    let order = full_order();
    let decoded = shop::Order::decode(order.encode_to_vec().as_slice()).unwrap();
    assert_eq!(decoded, order);

    let json = serde_json::to_string(&order).unwrap();
    let back: shop::Order = serde_json::from_str(&json).unwrap();
    assert_eq!(back, order, "{json}");

    // The bridge's own path: JSON → protobuf → JSON.
    let proto = wsgrpc_runtime::json_to_proto::<shop::Order>(&json).unwrap();
    let again = wsgrpc_runtime::proto_to_json::<shop::Order>(&proto).unwrap();
    let again: Value = serde_json::from_str(again.get()).unwrap();
    assert_eq!(again, serde_json::from_str::<Value>(&json).unwrap());
}

#[test]
fn json_follows_the_proto3_mapping() {
    let json = serde_json::to_value(full_order()).unwrap();
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
    assert_eq!(wkt["list"], json!([true, "x"]));
    assert_eq!(wkt["maybeName"], "");
    assert_eq!(wkt["maybeCount"], "9223372036854775807");
    assert_eq!(wkt["maybeFlag"], false);
    assert_eq!(wkt["maybeBytes"], "CQk=");
    assert_eq!(wkt["mask"], "scalars.fInt64,note");
    assert_eq!(wkt["nothing"], json!({}));
    assert_eq!(json["keywords"]["type"], "t");
    assert_eq!(json["keywords"]["self"], 1);
}

#[test]
fn input_accepts_both_spellings_numbers_for_64_bit_and_enum_numbers() {
    let order: shop::Order = serde_json::from_value(json!({
        "id": "x",
        "state": 1,
        "card_token": "tok",
        "scalars": {"f_int64": 42, "fUint64": "7", "fDouble": "NaN"},
        "wellKnown": {"createdAt": "1970-01-01T00:00:01Z"}
    }))
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

#[test]
fn names_from_two_packages_and_keywords_stay_apart() {
    let shop_item = shop::Item {
        name: "n".into(),
        common: Some(common::Item { sku: "s".into() }),
        availability: common::Availability::SoldOut as i32,
    };
    let json = serde_json::to_value(&shop_item).unwrap();
    assert_eq!(
        json,
        json!({"name": "n", "common": {"sku": "s"}, "availability": "AVAILABILITY_SOLD_OUT"})
    );
    let keyword_message = common::Self_ { r#type: "x".into() };
    assert_eq!(
        serde_json::to_value(keyword_message).unwrap(),
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
