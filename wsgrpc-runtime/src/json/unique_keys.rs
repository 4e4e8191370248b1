//! Proto3 JSON with a key given twice is refused, as Google's parsers
//! refuse it, rather than one of the two values winning unseen (the two
//! may have been checked by different layers: a proxy reads the first, the
//! backend gets the second).
//!
//! The same walk notes numbers at the edges of the 64-bit integers, which
//! `json` then looks at again (see `refuse_past_64_bits` there).

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Objects with more members than this are checked with a hash set rather
/// than by comparing each key with the ones before it.
const LINEAR_KEYS: usize = 16;

/// What [`check`] saw besides keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Scanned {
    /// A number that serde_json holds as an `f64` of 2^64 or ±2^63: one
    /// past (or, rounded, beyond) what a 64-bit integer field holds.
    pub(super) edge_numbers: bool,
}

/// Checks that no object in `json` has a key twice. `json` has been read
/// once already and found valid.
pub(super) fn check(json: &str) -> Result<Scanned, serde_json::Error> {
    let edge = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_str(json);
    AnyValue { edge: &edge }.deserialize(&mut deserializer)?;
    Ok(Scanned {
        edge_numbers: edge.get(),
    })
}

/// 2^64 and ±2^63, as `f64`s.
pub(super) fn is_at_64_bit_edge(number: f64) -> bool {
    number == 18_446_744_073_709_551_616.0 || number.abs() == 9_223_372_036_854_775_808.0
}

/// Any JSON value, walked for its objects' keys and otherwise ignored
/// (but for numbers at the 64-bit edges, which `edge` notes).
#[derive(Clone, Copy)]
struct AnyValue<'a> {
    edge: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for AnyValue<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AnyValue<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, number: f64) -> Result<(), E> {
        if is_at_64_bit_edge(number) {
            self.edge.set(true);
        }
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys: Vec<Cow<'de, str>> = Vec::new();
        let mut many: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let repeated = if keys.len() < LINEAR_KEYS {
                keys.contains(&key)
            } else {
                if many.is_empty() {
                    many.extend(keys.iter().cloned());
                }
                many.contains(&key)
            };
            if repeated {
                return Err(de::Error::custom(format_args!(
                    "key `{}` is given twice",
                    crate::untrusted::Untrusted(&key)
                )));
            }
            if keys.len() < LINEAR_KEYS {
                keys.push(key);
            } else {
                many.insert(key);
            }
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_twice_at_any_depth_is_refused() {
        assert!(check(r#"{"name":"a","name":"b"}"#).is_err());
        assert!(check(r#"{"a":{"x":1,"y":[{"z":1,"z":2}]}}"#).is_err());
        // The same key in two objects, or escaped differently but equal.
        assert!(check(r#"{"a":{"x":1},"b":{"x":1}}"#).is_ok());
        assert!(check(r#"{"n\u0061me":"a","name":"b"}"#).is_err());
        let err = check(r#"{"a":1,"a":2}"#).unwrap_err().to_string();
        assert!(err.contains("key `a` is given twice"), "{err}");
    }

    #[test]
    fn numbers_at_the_64_bit_edges_are_noted() {
        let edge = |json| check(json).unwrap().edge_numbers;
        assert!(edge("[18446744073709551616]"));
        assert!(edge(r#"{"a":{"b":[-9223372036854775809]}}"#));
        assert!(edge("9.223372036854775808e18"));
        // Integers serde_json holds exactly, and other floats.
        assert!(!edge(
            "[18446744073709551615, -9223372036854775808, 1e300, 1.5]"
        ));
        assert!(!edge(r#"{"a":"18446744073709551616"}"#));
    }

    #[test]
    fn large_objects_are_checked_too() {
        let members: Vec<String> = (0..100).map(|n| format!("\"k{n}\":{n}")).collect();
        let object = format!("{{{}}}", members.join(","));
        assert!(check(&object).is_ok());
        let twice = format!("{{{},\"k3\":0}}", members.join(","));
        assert!(check(&twice).is_err());
    }
}
