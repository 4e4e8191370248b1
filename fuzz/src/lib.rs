//! What the fuzz targets share.

use wsgrpc_tests::rich::common::v1 as common;
use wsgrpc_tests::rich::shop::v1 as shop;
use wsgrpc_tests::test_v1;

/// Whether a message holds only values that equal themselves once decoded
/// again: not NaN (a map's entries may come back in another order, so
/// messages are compared, not bytes). ±Infinity is excluded with it.
pub trait Representable {
    fn representable(&self) -> bool {
        true
    }
}

impl Representable for test_v1::TestRequest {}
impl Representable for test_v1::TestResponse {}
impl Representable for shop::GetOrderRequest {}
impl Representable for shop::WatchOrdersRequest {}
impl Representable for shop::Item {}
impl Representable for shop::UploadSummary {}
impl Representable for shop::Offer {}
impl Representable for common::Item {}
impl Representable for common::Self_ {}

impl Representable for shop::Order {
    fn representable(&self) -> bool {
        self.scalars
            .as_ref()
            .is_none_or(Representable::representable)
            && self
                .well_known
                .as_ref()
                .is_none_or(Representable::representable)
    }
}

impl Representable for shop::Scalars {
    fn representable(&self) -> bool {
        self.f_double.is_finite()
            && self.f_float.is_finite()
            && self.r_double.iter().all(|f| f.is_finite())
    }
}

impl Representable for shop::WellKnown {
    fn representable(&self) -> bool {
        self.maybe_ratio
                .as_ref()
                .is_none_or(|r| r.value.is_finite())
            && self
                .any_value
                .as_ref()
                .is_none_or(Representable::representable)
            && self
                .attributes
                .as_ref()
                .is_none_or(Representable::representable)
            && self.list.as_ref().is_none_or(Representable::representable)
    }
}

impl Representable for pbjson_types::Value {
    fn representable(&self) -> bool {
        use pbjson_types::value::Kind;
        match &self.kind {
            Some(Kind::NumberValue(n)) => n.is_finite(),
            Some(Kind::StructValue(s)) => s.representable(),
            Some(Kind::ListValue(l)) => l.representable(),
            _ => true,
        }
    }
}

impl Representable for pbjson_types::Struct {
    fn representable(&self) -> bool {
        self.fields.values().all(Representable::representable)
    }
}

impl Representable for pbjson_types::ListValue {
    fn representable(&self) -> bool {
        self.values.iter().all(Representable::representable)
    }
}
