//! The direct writer (`direct`) against the general path (a
//! `DynamicMessage` serialized by prost-reflect), for the differential
//! tests: the fuzz target `direct_json` and `json::direct::proptests`. Not
//! part of the API.
//!
//! The direct writer has no error of its own: malformed bytes, like every
//! input it does not vouch for, make it decline, and the general path then
//! gives the error. So there are two outcomes to check: it declines
//! (nothing to compare), or it writes, and then the general path must
//! write the same JSON, as [`same_json`] defines it; that the general path
//! refuses what the direct writer wrote is a difference too.

use serde_json::{Number, Value};

use super::{JsonOptions, JsonWriter, unique_keys, write_general};

/// What [`compare`] found, when the two paths do not disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compared {
    /// The direct writer declined; the general path writes alone.
    Declined,
    /// Both wrote, the same JSON.
    Same,
}

/// Every combination of the three options.
pub fn every_options() -> [JsonOptions; 8] {
    std::array::from_fn(|bits| {
        JsonOptions::canonical()
            .emit_defaults(bits & 1 != 0)
            .enum_numbers(bits & 2 != 0)
            .proto_field_names(bits & 4 != 0)
    })
}

/// Writes `proto` with `writer`'s direct writer and the general path, and
/// says how they differ, if they do.
pub fn compare(
    writer: &JsonWriter,
    proto: &[u8],
    options: &JsonOptions,
) -> Result<Compared, String> {
    let mut direct = Vec::new();
    if writer.layout.write(proto, options, &mut direct).is_err() {
        return Ok(Compared::Declined);
    }
    let direct =
        String::from_utf8(direct).map_err(|err| format!("direct wrote no UTF-8: {err}"))?;
    let parsed: Value = serde_json::from_str(&direct)
        .map_err(|err| format!("direct wrote invalid JSON {direct}: {err}"))?;
    // Parsing keeps the last of two equal keys: look for them in the text.
    unique_keys::check(&direct).map_err(|err| format!("direct wrote {direct}: {err}"))?;
    let mut general = Vec::new();
    write_general(writer.descriptor(), proto, options, &mut general)
        .map_err(|err| format!("direct wrote {direct}, the general path refuses: {err}"))?;
    let general: Value = serde_json::from_slice(&general).expect("the general path writes JSON");
    same_json(&parsed, &general)
        .map_err(|at| format!("they differ at {at}: direct {direct}, general {general}"))?;
    Ok(Compared::Same)
}

/// Whether `a` and `b` are the same JSON, for a reader of proto3 JSON;
/// where they are not, the path (`/field/0`) to the first difference.
///
/// Allowances, and only these:
/// - The members of an object may come in any order: a map's entries, a
///   `Struct`'s keys and a message's fields mean the same in any order.
///   (Both are parsed into `serde_json::Map`, which is sorted; a key
///   written twice is caught on the text, by [`compare`].)
/// - A number may be spelt differently if it is the same number: `1.0`
///   and `1`, `1e300` and `1e+300`. Integers compare exactly, floats by
///   their bits (parsed with `float_roundtrip`), and an integer equals a
///   float only when the float is exactly that integer.
///
/// Not allowed, on purpose:
/// - `-0.0` against `0.0` (or `0`): a reader keeps the sign of a float.
/// - NaN and ±Infinity are the strings `"NaN"`, `"Infinity"`,
///   `"-Infinity"`, compared as strings; a NaN number cannot occur in JSON.
/// - 64-bit integers are strings, compared to the letter (`"01"` is not
///   `"1"`); so are enum names, bytes in base64 and well-known types.
/// - A member present on one side and left out on the other, even at its
///   default.
pub fn same_json(a: &Value, b: &Value) -> Result<(), String> {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            if let Some(key) = a.keys().find(|key| !b.contains_key(*key)) {
                return Err(format!("/{key} (only in the first)"));
            }
            if let Some(key) = b.keys().find(|key| !a.contains_key(*key)) {
                return Err(format!("/{key} (only in the second)"));
            }
            for (key, value) in a {
                same_json(value, &b[key]).map_err(|at| format!("/{key}{at}"))?;
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Err(format!(" (lengths {} and {})", a.len(), b.len()));
            }
            for (index, (a, b)) in a.iter().zip(b).enumerate() {
                same_json(a, b).map_err(|at| format!("/{index}{at}"))?;
            }
            Ok(())
        }
        (Value::Number(a), Value::Number(b)) if same_number(a, b) => Ok(()),
        (a, b) if a == b && !a.is_number() => Ok(()),
        _ => Err(String::new()),
    }
}

fn same_number(a: &Number, b: &Number) -> bool {
    let integer = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (integer(a), integer(b), a.as_f64(), b.as_f64()) {
        (Some(a), Some(b), _, _) => a == b,
        (None, None, Some(a), Some(b)) => a.to_bits() == b.to_bits(),
        (Some(integer), None, _, Some(float)) | (None, Some(integer), Some(float), _) => {
            // Exactly that integer: `as` saturates and rounds, so check
            // both ways; bits, so that -0.0 is not 0.
            float as i128 == integer && (integer as f64).to_bits() == float.to_bits()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn numbers_are_the_same_when_their_values_are() {
        for (a, b) in [
            ("1", "1.0"),
            ("1e300", "1E+300"),
            ("-5", "-5.0"),
            ("18446744073709551615", "18446744073709551615"),
            ("0.1", "0.10"),
            (r#"{"a":1,"b":2}"#, r#"{"b":2,"a":1.0}"#),
        ] {
            assert_eq!(same_json(&parsed(a), &parsed(b)), Ok(()), "{a} {b}");
        }
        for (a, b) in [
            ("-0.0", "0.0"),
            ("-0.0", "0"),
            ("18446744073709551615", "18446744073709551616.0"),
            ("0.1", "0.1000000001"),
            (r#""1""#, "1"),
            (r#""01""#, r#""1""#),
        ] {
            assert!(same_json(&parsed(a), &parsed(b)).is_err(), "{a} {b}");
        }
    }

    #[test]
    fn names_the_path_of_the_first_difference() {
        let a = json!({"m": {"k": [1, {"x": "NaN"}]}, "n": 1});
        let b = json!({"m": {"k": [1, {"x": "Infinity"}]}, "n": 1});
        assert_eq!(same_json(&a, &b), Err("/m/k/1/x".to_owned()));
        let b = json!({"m": {"k": [1, {"x": "NaN"}]}});
        assert_eq!(same_json(&a, &b), Err("/n (only in the first)".to_owned()));
    }
}
