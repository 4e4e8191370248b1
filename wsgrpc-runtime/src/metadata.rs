//! Metadata between the envelope's JSON form and gRPC's `MetadataMap`.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use tonic::metadata::{
    AsciiMetadataKey, AsciiMetadataValue, BinaryMetadataKey, BinaryMetadataValue, KeyAndValueRef,
    MetadataMap,
};

use crate::config::BridgeConfig;

/// Metadata as it travels in an envelope: lower-case keys, string values.
///
/// Keys ending in `-bin` carry base64 (standard alphabet, padding optional),
/// as in the gRPC HTTP/2 mapping. Repeated keys are joined with `", "`.
pub type Metadata = std::collections::BTreeMap<String, String>;

/// Standard base64 that accepts input with or without padding, as gRPC does.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Headers that belong to the HTTP/2 transport or to gRPC itself; a client
/// may not set them and they are not echoed back as metadata.
fn is_reserved(key: &str) -> bool {
    key.starts_with("grpc-")
        || key.starts_with(':')
        || matches!(
            key,
            "content-type"
                | "content-length"
                | "te"
                | "host"
                | "connection"
                | "keep-alive"
                | "proxy-connection"
                | "transfer-encoding"
                | "upgrade"
                | "trailer"
                | "date"
        )
}

/// How much metadata one call may carry.
///
/// Every call of every socket shares one HTTP/2 connection to the backend,
/// and a header block the backend will not take can break that connection
/// for all of them; so the bridge refuses a call whose metadata is large
/// long before a gRPC server would (their limits start at 8–16 KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MetadataLimits {
    /// Entries, keys counted once each.
    pub max_entries: usize,
    /// Bytes as HTTP/2 counts a header list: each key and value, plus 32
    /// per entry.
    pub max_bytes: usize,
}

impl Default for MetadataLimits {
    /// The limits of a bridge with [`BridgeConfig`]'s defaults.
    fn default() -> Self {
        BridgeConfig::default().metadata_limits()
    }
}

/// What HTTP/2 (RFC 9113, SETTINGS_MAX_HEADER_LIST_SIZE) adds per entry.
const ENTRY_OVERHEAD: usize = 32;

/// Why a client's metadata is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MetadataError {
    /// Over [`MetadataLimits`]: `RESOURCE_EXHAUSTED`.
    TooLarge(String),
    /// A key or value that is not allowed: `INVALID_ARGUMENT`.
    Invalid(String),
}

impl MetadataError {
    pub(crate) fn into_status(self) -> tonic::Status {
        match self {
            Self::TooLarge(message) => tonic::Status::resource_exhausted(message),
            Self::Invalid(message) => tonic::Status::invalid_argument(message),
        }
    }
}

/// A client's metadata made canonical, once, before anything looks at it:
/// within `limits`, every key lower-cased (as HTTP/2 sends it and as the
/// backend will see it), valid as a header name, not reserved and not
/// given twice in two spellings; every value a valid header value.
/// Identity checks and `authorize_call` then compare what will be sent.
pub(crate) fn canonical(
    metadata: Metadata,
    limits: &MetadataLimits,
) -> Result<Metadata, MetadataError> {
    if metadata.len() > limits.max_entries {
        return Err(MetadataError::TooLarge(format!(
            "metadata has {} entries; the limit is {}",
            metadata.len(),
            limits.max_entries
        )));
    }
    let bytes: usize = metadata
        .iter()
        .map(|(key, value)| key.len() + value.len() + ENTRY_OVERHEAD)
        .sum();
    if bytes > limits.max_bytes {
        return Err(MetadataError::TooLarge(format!(
            "metadata takes {bytes} bytes; the limit is {}",
            limits.max_bytes
        )));
    }
    let mut canonical = Metadata::new();
    for (key, value) in metadata {
        let lower = key.to_ascii_lowercase();
        entry(&lower, &value)?;
        if canonical.contains_key(&lower) {
            return Err(MetadataError::Invalid(format!(
                "metadata key `{lower}` is given twice, in two spellings"
            )));
        }
        canonical.insert(lower, value);
    }
    Ok(canonical)
}

/// One entry, as it goes on the wire.
enum Entry {
    Text(AsciiMetadataKey, AsciiMetadataValue),
    Binary(BinaryMetadataKey, BinaryMetadataValue),
}

fn entry(key: &str, value: &str) -> Result<Entry, MetadataError> {
    if is_reserved(key) {
        return Err(MetadataError::Invalid(format!(
            "metadata key `{key}` is reserved"
        )));
    }
    let invalid_key =
        |_| MetadataError::Invalid(format!("metadata key `{key}` is not a valid header name"));
    if key.ends_with("-bin") {
        let parsed_key = BinaryMetadataKey::from_bytes(key.as_bytes()).map_err(invalid_key)?;
        let bytes = BASE64.decode(value).map_err(|err| {
            MetadataError::Invalid(format!("metadata `{key}` is not base64: {err}"))
        })?;
        Ok(Entry::Binary(
            parsed_key,
            BinaryMetadataValue::from_bytes(&bytes),
        ))
    } else {
        let parsed_key = AsciiMetadataKey::from_bytes(key.as_bytes()).map_err(invalid_key)?;
        let not_printable = || {
            MetadataError::Invalid(format!(
                "metadata `{key}` has a value that is not printable ASCII"
            ))
        };
        // gRPC's ASCII values are space and printable ASCII; HTTP would
        // also take bytes above 0x7F, which a backend then cannot read as
        // text (and which would not come back as the client sent them).
        if !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(not_printable());
        }
        let value = AsciiMetadataValue::try_from(value).map_err(|_| not_printable())?;
        Ok(Entry::Text(parsed_key, value))
    }
}

/// Adds metadata to the backend's request; a client's must be
/// [`canonical`] first.
pub(crate) fn to_grpc(metadata: &Metadata, into: &mut MetadataMap) -> Result<(), MetadataError> {
    for (key, value) in metadata {
        match entry(key, value)? {
            Entry::Text(key, value) => into.append(key, value),
            Entry::Binary(key, value) => into.append_bin(key, value),
        };
    }
    Ok(())
}

/// The application metadata in a backend's headers or trailers, or `None`
/// where there is none.
pub(crate) fn from_grpc(map: &MetadataMap) -> Option<Metadata> {
    let mut out = Metadata::new();
    for entry in map.iter() {
        let (key, value) = match entry {
            KeyAndValueRef::Ascii(key, value) => match value.to_str() {
                Ok(text) => (key.as_str(), text.to_owned()),
                // Opaque bytes in a text header cannot be carried as a JSON string.
                Err(_) => continue,
            },
            KeyAndValueRef::Binary(key, value) => match value.to_bytes() {
                Ok(bytes) => (key.as_str(), BASE64.encode(bytes)),
                Err(_) => continue,
            },
        };
        if is_reserved(key) {
            continue;
        }
        out.entry(key.to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    (!out.is_empty()).then_some(out)
}

/// base64 of bytes, the way binary metadata and status details travel.
pub(crate) fn encode_base64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_text_and_binary_values() {
        let mut metadata = Metadata::new();
        metadata.insert("authorization".into(), "Bearer t0ken".into());
        metadata.insert("trace-bin".into(), "AAEC".into());
        let mut map = MetadataMap::new();
        to_grpc(&metadata, &mut map).unwrap();
        assert_eq!(map.get("authorization").unwrap(), "Bearer t0ken");
        assert_eq!(
            map.get_bin("trace-bin")
                .unwrap()
                .to_bytes()
                .unwrap()
                .as_ref(),
            [0, 1, 2]
        );
        assert_eq!(from_grpc(&map), Some(metadata));
    }

    #[test]
    fn refuses_reserved_and_invalid_keys() {
        for (key, value) in [
            ("grpc-timeout", "1S"),
            ("content-type", "text/plain"),
            ("Bad Key", "x"),
            ("x-bin", "not base64!"),
            ("x-text", "line\nbreak"),
        ] {
            let metadata = Metadata::from([(key.to_owned(), value.to_owned())]);
            assert!(
                to_grpc(&metadata, &mut MetadataMap::new()).is_err(),
                "{key}"
            );
        }
    }

    fn canonical_of(entries: &[(&str, &str)]) -> Result<Metadata, MetadataError> {
        let metadata = entries
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        canonical(metadata, &MetadataLimits::default())
    }

    #[test]
    fn keys_are_lower_cased_before_anything_looks_at_them() {
        let metadata = canonical_of(&[("X-User-Id", "admin"), ("Trace-BIN", "AAEC")]).unwrap();
        assert_eq!(
            metadata.keys().collect::<Vec<_>>(),
            ["trace-bin", "x-user-id"]
        );
        for reserved in [
            "Grpc-Timeout",
            "GRPC-ENCODING",
            "Content-Type",
            "TE",
            ":Path",
        ] {
            let err = canonical_of(&[(reserved, "x")]).unwrap_err();
            assert!(
                matches!(&err, MetadataError::Invalid(m) if m.contains("reserved")),
                "{reserved}: {err:?}"
            );
        }
        let twice = canonical_of(&[("x-a", "1"), ("X-A", "2")]).unwrap_err();
        assert!(matches!(twice, MetadataError::Invalid(m) if m.contains("twice")));
    }

    #[test]
    fn a_call_carries_bounded_metadata() {
        let limits = MetadataLimits::default();
        let value = "v".repeat(limits.max_bytes);
        let err = canonical_of(&[("x-big", &value)]).unwrap_err();
        assert!(matches!(err, MetadataError::TooLarge(_)), "{err:?}");
        let many: Vec<(String, String)> = (0..=limits.max_entries)
            .map(|n| (format!("x-{n}"), "1".to_owned()))
            .collect();
        let err = canonical(many.into_iter().collect(), &limits).unwrap_err();
        assert!(matches!(err, MetadataError::TooLarge(_)), "{err:?}");
        // Just within both limits.
        let fits = "v".repeat(limits.max_bytes - "x-big".len() - ENTRY_OVERHEAD);
        assert!(canonical_of(&[("x-big", &fits)]).is_ok());
        let status = MetadataError::TooLarge("x".into()).into_status();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    }

    #[test]
    fn hides_transport_headers_and_joins_repeats() {
        let mut map = MetadataMap::new();
        map.insert("content-type", "application/grpc".parse().unwrap());
        map.insert("grpc-status", "0".parse().unwrap());
        assert_eq!(from_grpc(&map), None);
        map.append("x-tag", "a".parse().unwrap());
        map.append("x-tag", "b".parse().unwrap());
        assert_eq!(from_grpc(&map).unwrap()["x-tag"], "a, b");
    }
}

#[cfg(test)]
mod proptests;
