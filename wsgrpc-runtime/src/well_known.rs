//! Well-known types whose proto3 JSON form `pbjson-types` does not produce.
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
}
