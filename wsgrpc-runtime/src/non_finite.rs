//! NaN and ±Infinity as proto3 JSON spells them.
//!
//! The proto3 JSON mapping writes non-finite floats as the strings `"NaN"`,
//! `"Infinity"` and `"-Infinity"`. prost-reflect does so for float fields,
//! but hands the values of `FloatValue` and `DoubleValue` to serde as plain
//! floats, which serde_json writes as `null`. Wrapping the serializer turns
//! those floats into their strings at any depth and passes everything else
//! through unchanged.

use serde::ser::{self, Serialize, Serializer};

/// A value that serializes with its non-finite floats spelled out.
pub(crate) struct Spelled<'a, T: ?Sized>(pub(crate) &'a T);

impl<T: Serialize + ?Sized> Serialize for Spelled<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(SpellingSerializer(serializer))
    }
}

/// The proto3 JSON spelling of `value`, where it is not finite.
pub(crate) fn spelled(value: f64) -> Option<&'static str> {
    if value.is_nan() {
        Some("NaN")
    } else if value == f64::INFINITY {
        Some("Infinity")
    } else if value == f64::NEG_INFINITY {
        Some("-Infinity")
    } else {
        None
    }
}

struct SpellingSerializer<S>(S);

/// Forwards a serializer method unchanged.
macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {
        $(fn $method(self, $($arg: $ty),*) -> Result<$out, S::Error> {
            self.0.$method($($arg),*)
        })*
    };
}

impl<S: Serializer> Serializer for SpellingSerializer<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = SpellingSerializer<S::SerializeSeq>;
    type SerializeTuple = SpellingSerializer<S::SerializeTuple>;
    type SerializeTupleStruct = SpellingSerializer<S::SerializeTupleStruct>;
    type SerializeTupleVariant = SpellingSerializer<S::SerializeTupleVariant>;
    type SerializeMap = SpellingSerializer<S::SerializeMap>;
    type SerializeStruct = SpellingSerializer<S::SerializeStruct>;
    type SerializeStructVariant = SpellingSerializer<S::SerializeStructVariant>;

    fn serialize_f32(self, value: f32) -> Result<S::Ok, S::Error> {
        match spelled(f64::from(value)) {
            Some(text) => self.0.serialize_str(text),
            None => self.0.serialize_f32(value),
        }
    }

    fn serialize_f64(self, value: f64) -> Result<S::Ok, S::Error> {
        match spelled(value) {
            Some(text) => self.0.serialize_str(text),
            None => self.0.serialize_f64(value),
        }
    }

    forward! {
        serialize_bool(v: bool) -> S::Ok;
        serialize_i8(v: i8) -> S::Ok;
        serialize_i16(v: i16) -> S::Ok;
        serialize_i32(v: i32) -> S::Ok;
        serialize_i64(v: i64) -> S::Ok;
        serialize_i128(v: i128) -> S::Ok;
        serialize_u8(v: u8) -> S::Ok;
        serialize_u16(v: u16) -> S::Ok;
        serialize_u32(v: u32) -> S::Ok;
        serialize_u64(v: u64) -> S::Ok;
        serialize_u128(v: u128) -> S::Ok;
        serialize_char(v: char) -> S::Ok;
        serialize_str(v: &str) -> S::Ok;
        serialize_bytes(v: &[u8]) -> S::Ok;
        serialize_none() -> S::Ok;
        serialize_unit() -> S::Ok;
        serialize_unit_struct(name: &'static str) -> S::Ok;
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str) -> S::Ok;
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Spelled(value))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Spelled(value))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &Spelled(value))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.0.serialize_seq(len).map(SpellingSerializer)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(SpellingSerializer)
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0
            .serialize_tuple_struct(name, len)
            .map(SpellingSerializer)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(SpellingSerializer)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.0.serialize_map(len).map(SpellingSerializer)
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        self.0.serialize_struct(name, len).map(SpellingSerializer)
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(SpellingSerializer)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// The compound serializers: each wraps the values handed to it, so that
/// floats at any depth are spelled out too.
macro_rules! spell_values {
    ($($trait:ident { $($method:ident($($key:ident: $key_ty:ty),*)),* })*) => {
        $(impl<S: ser::$trait> ser::$trait for SpellingSerializer<S> {
            type Ok = S::Ok;
            type Error = S::Error;

            $(fn $method<T: Serialize + ?Sized>(
                &mut self,
                $($key: $key_ty,)*
                value: &T,
            ) -> Result<(), S::Error> {
                self.0.$method($($key,)* &Spelled(value))
            })*

            fn end(self) -> Result<S::Ok, S::Error> {
                self.0.end()
            }
        })*
    };
}

spell_values! {
    SerializeSeq { serialize_element() }
    SerializeTuple { serialize_element() }
    SerializeTupleStruct { serialize_field() }
    SerializeTupleVariant { serialize_field() }
    SerializeMap { serialize_key(), serialize_value() }
    SerializeStruct { serialize_field(key: &'static str) }
    SerializeStructVariant { serialize_field(key: &'static str) }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    fn json<T: serde::Serialize>(value: &T) -> String {
        serde_json::to_string(&super::Spelled(value)).unwrap()
    }

    #[test]
    fn non_finite_floats_are_spelled_out_at_any_depth() {
        assert_eq!(json(&f64::NAN), r#""NaN""#);
        assert_eq!(json(&f32::INFINITY), r#""Infinity""#);
        assert_eq!(json(&vec![1.5, f64::NEG_INFINITY]), r#"[1.5,"-Infinity"]"#);
        let map = BTreeMap::from([("a", Some(f64::NAN)), ("b", None)]);
        assert_eq!(json(&map), r#"{"a":"NaN","b":null}"#);
    }

    #[test]
    fn everything_else_is_unchanged() {
        let value = serde_json::json!({"n": 1, "x": 2.5, "s": "NaN", "l": [true, null], "o": {}});
        assert_eq!(json(&value), serde_json::to_string(&value).unwrap());
    }
}
