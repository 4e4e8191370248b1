//! Well-known types whose proto3 JSON form `pbjson-types` does not produce,
//! or does not check: it takes `"--5s"` for a Duration.
//!
//! Generated code refers to these through an extern path, so messages that
//! use them speak the canonical JSON.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// `google.protobuf.FieldMask`. In JSON it is one string: the paths in
/// lowerCamelCase, joined by commas (`"user.displayName,photo"`).
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct FieldMask {
    /// The paths in their proto spelling (`user.display_name`).
    #[prost(string, repeated, tag = "1")]
    pub paths: Vec<String>,
}

impl FieldMask {
    pub fn new(paths: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            paths: paths.into_iter().map(Into::into).collect(),
        }
    }
}

fn to_lower_camel(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut upper_next = false;
    for c in path.chars() {
        match c {
            '_' => upper_next = true,
            c if upper_next => {
                out.extend(c.to_uppercase());
                upper_next = false;
            }
            c => out.push(c),
        }
    }
    out
}

fn to_snake(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

impl Serialize for FieldMask {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let joined: Vec<String> = self.paths.iter().map(|path| to_lower_camel(path)).collect();
        serializer.serialize_str(&joined.join(","))
    }
}

impl<'de> Deserialize<'de> for FieldMask {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MaskVisitor;

        impl Visitor<'_> for MaskVisitor {
            type Value = FieldMask;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a FieldMask: comma-separated lowerCamelCase paths")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<FieldMask, E> {
                let paths = value
                    .split(',')
                    .map(str::trim)
                    .filter(|path| !path.is_empty())
                    .map(|path| {
                        if path.contains('_') {
                            return Err(E::custom(format!(
                                "FieldMask path `{path}` must be lowerCamelCase in JSON"
                            )));
                        }
                        Ok(to_snake(path))
                    })
                    .collect::<Result<_, _>>()?;
                Ok(FieldMask { paths })
            }
        }

        deserializer.deserialize_str(MaskVisitor)
    }
}

/// `google.protobuf.Duration`. In JSON it is a string of seconds with an
/// `s` and up to nine decimals: `"-1.5s"`, `"3600s"`, `"0.000000001s"`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct Duration {
    /// Whole seconds, from -315,576,000,000 to +315,576,000,000.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds, -999,999,999 to +999,999,999, of the sign of `seconds`.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// About 10,000 years, the range the proto3 specification gives.
const MAX_DURATION_SECONDS: i64 = 315_576_000_000;
const NANOS_PER_SECOND: i32 = 1_000_000_000;

impl Duration {
    pub fn new(seconds: i64, nanos: i32) -> Self {
        Self { seconds, nanos }
    }

    /// Whether the fields are in range and of one sign.
    pub fn is_valid(&self) -> bool {
        self.seconds.unsigned_abs() <= MAX_DURATION_SECONDS.unsigned_abs()
            && self.nanos.unsigned_abs() < NANOS_PER_SECOND.unsigned_abs()
            && (self.seconds == 0 || self.nanos == 0 || (self.seconds < 0) == (self.nanos < 0))
    }

    /// Parses the JSON form, without the quotes.
    fn parse(text: &str) -> Result<Self, String> {
        let invalid =
            || format!("`{text}` is not a Duration: write seconds with an `s`, as in \"1.5s\"");
        let number = text.strip_suffix('s').ok_or_else(invalid)?;
        let (negative, digits) = match number.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, number),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || !all_digits(whole)
            || !all_digits(fraction)
            || fraction.len() > 9
            || (digits.contains('.') && fraction.is_empty())
        {
            return Err(invalid());
        }
        let seconds: i64 = whole
            .parse()
            .ok()
            .filter(|seconds| *seconds <= MAX_DURATION_SECONDS)
            .ok_or_else(|| {
                format!("`{text}` is out of a Duration's range (±{MAX_DURATION_SECONDS}s)")
            })?;
        let nanos: i32 = format!("{fraction:0<9}").parse().map_err(|_| invalid())?;
        let sign = if negative { -1 } else { 1 };
        Ok(Self::new(sign * seconds, sign as i32 * nanos))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !self.is_valid() {
            return Err(serde::ser::Error::custom(format!(
                "Duration of {}s and {}ns is out of range or of mixed signs",
                self.seconds, self.nanos
            )));
        }
        let sign = if self.seconds < 0 || self.nanos < 0 {
            "-"
        } else {
            ""
        };
        let (seconds, nanos) = (self.seconds.unsigned_abs(), self.nanos.unsigned_abs());
        // 0, 3, 6 or 9 decimals, as the proto3 JSON mapping writes them.
        let text = if nanos == 0 {
            format!("{sign}{seconds}s")
        } else if nanos % 1_000_000 == 0 {
            format!("{sign}{seconds}.{:03}s", nanos / 1_000_000)
        } else if nanos % 1_000 == 0 {
            format!("{sign}{seconds}.{:06}s", nanos / 1_000)
        } else {
            format!("{sign}{seconds}.{nanos:09}s")
        };
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = Duration;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a Duration: seconds with an `s`, as in \"1.5s\"")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Duration, E> {
                Duration::parse(value).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_one_camel_case_string() {
        let mask = FieldMask::new(["user.display_name", "photo", "f_int64"]);
        let json = serde_json::to_string(&mask).unwrap();
        assert_eq!(json, r#""user.displayName,photo,fInt64""#);
        assert_eq!(serde_json::from_str::<FieldMask>(&json).unwrap(), mask);
        assert_eq!(
            serde_json::from_str::<FieldMask>(r#""""#).unwrap(),
            FieldMask::default()
        );
        assert!(serde_json::from_str::<FieldMask>(r#""a_b""#).is_err());
        assert!(serde_json::from_str::<FieldMask>(r#"{"paths":["a"]}"#).is_err());
    }

    fn duration_json(text: &str) -> Result<Duration, serde_json::Error> {
        serde_json::from_str(&format!("\"{text}\""))
    }

    #[test]
    fn durations_read_and_write_their_canonical_form() {
        for (text, seconds, nanos, canonical) in [
            ("1.5s", 1, 500_000_000, "1.500s"),
            ("-1.5s", -1, -500_000_000, "-1.500s"),
            ("-0.25s", 0, -250_000_000, "-0.250s"),
            ("3600s", 3600, 0, "3600s"),
            ("0s", 0, 0, "0s"),
            ("0.000001s", 0, 1_000, "0.000001s"),
            ("1.000000001s", 1, 1, "1.000000001s"),
            ("315576000000s", 315_576_000_000, 0, "315576000000s"),
        ] {
            let duration = duration_json(text).unwrap();
            assert_eq!(duration, Duration::new(seconds, nanos), "{text}");
            let written = serde_json::to_string(&duration).unwrap();
            assert_eq!(written, format!("\"{canonical}\""));
            assert_eq!(duration_json(canonical).unwrap(), duration);
        }
    }

    #[test]
    fn malformed_durations_are_refused() {
        for text in [
            "--5.5s",
            "--9223372036854775808s",
            "-9223372036854775808s",
            "315576000001s",
            "1.5",
            "s",
            ".5s",
            "1.s",
            "1.0000000001s",
            "+1s",
            "1e3s",
            " 1s",
        ] {
            assert!(duration_json(text).is_err(), "{text}");
        }
        assert!(serde_json::from_str::<Duration>("1.5").is_err());
    }

    #[test]
    fn a_duration_of_mixed_signs_is_not_written() {
        assert!(serde_json::to_string(&Duration::new(1, -1)).is_err());
        assert!(serde_json::to_string(&Duration::new(315_576_000_001, 0)).is_err());
    }
}
