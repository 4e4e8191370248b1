//! Well-known types whose proto3 JSON form `pbjson-types` does not produce,
//! or does not check: it takes `"--5s"` for a Duration, and Timestamps
//! outside years 1 to 9999 both ways.
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

/// `google.protobuf.Timestamp`. In JSON an RFC 3339 date and time: written
/// in UTC with `Z` and 0, 3, 6 or 9 decimals, read with any offset. Years
/// 1 to 9999 only, as the proto3 JSON mapping has it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds into the second, 0 to 999,999,999.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
const TIMESTAMP_SECONDS: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

impl Timestamp {
    pub fn new(seconds: i64, nanos: i32) -> Self {
        Self { seconds, nanos }
    }

    /// Whether it lies in years 1 to 9999 with nanos in range.
    pub fn is_valid(&self) -> bool {
        TIMESTAMP_SECONDS.contains(&self.seconds) && (0..NANOS_PER_SECOND).contains(&self.nanos)
    }

    fn parse(text: &str) -> Result<Self, String> {
        let time = chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|err| format!("`{text}` is not an RFC 3339 timestamp: {err}"))?
            .to_utc();
        let nanos = time.timestamp_subsec_nanos();
        if nanos >= NANOS_PER_SECOND.unsigned_abs() {
            return Err(format!(
                "`{text}` is a leap second, which a Timestamp cannot hold"
            ));
        }
        let timestamp = Self::new(time.timestamp(), nanos as i32);
        if !timestamp.is_valid() {
            return Err(format!("`{text}` is outside years 1 to 9999 in UTC"));
        }
        Ok(timestamp)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let time = self
            .is_valid()
            .then(|| chrono::DateTime::from_timestamp(self.seconds, self.nanos as u32))
            .flatten()
            .ok_or_else(|| {
                serde::ser::Error::custom(format!(
                    "Timestamp of {}s and {}ns is outside years 1 to 9999",
                    self.seconds, self.nanos
                ))
            })?;
        serializer.serialize_str(&time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimestampVisitor;

        impl Visitor<'_> for TimestampVisitor {
            type Value = Timestamp;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a Timestamp: an RFC 3339 date and time, as in \"2024-05-01T12:00:00Z\"",
                )
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Timestamp, E> {
                Timestamp::parse(value).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(TimestampVisitor)
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

    fn timestamp_json(text: &str) -> Result<Timestamp, serde_json::Error> {
        serde_json::from_str(&format!("\"{text}\""))
    }

    #[test]
    fn timestamps_read_any_offset_and_write_utc() {
        for (text, seconds, nanos, canonical) in [
            ("1970-01-01T00:00:00Z", 0, 0, "1970-01-01T00:00:00Z"),
            (
                "1972-01-01T10:00:20.021Z",
                63_108_020,
                21_000_000,
                "1972-01-01T10:00:20.021Z",
            ),
            ("1970-01-01T01:00:00+01:00", 0, 0, "1970-01-01T00:00:00Z"),
            (
                "1969-12-31T23:59:59.000000001Z",
                -1,
                1,
                "1969-12-31T23:59:59.000000001Z",
            ),
            (
                "0001-01-01T00:00:00Z",
                -62_135_596_800,
                0,
                "0001-01-01T00:00:00Z",
            ),
            (
                "9999-12-31T23:59:59.999999Z",
                253_402_300_799,
                999_999_000,
                "9999-12-31T23:59:59.999999Z",
            ),
        ] {
            let timestamp = timestamp_json(text).unwrap();
            assert_eq!(timestamp, Timestamp::new(seconds, nanos), "{text}");
            let written = serde_json::to_string(&timestamp).unwrap();
            assert_eq!(written, format!("\"{canonical}\""));
        }
    }

    #[test]
    fn timestamps_outside_years_1_to_9999_or_malformed_are_refused() {
        for text in [
            "0000-01-01T00:00:00+01:00",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2016-12-31T23:59:60Z",
            "2024-05-01",
            "2024-05-01T12:00:00",
            "yesterday",
        ] {
            assert!(timestamp_json(text).is_err(), "{text}");
        }
        for (seconds, nanos) in [
            (-62_135_596_801, 0),
            (253_402_300_800, 0),
            (0, -1),
            (0, 1_000_000_000),
            (i64::MIN, 0),
        ] {
            assert!(serde_json::to_string(&Timestamp::new(seconds, nanos)).is_err());
        }
    }
}
