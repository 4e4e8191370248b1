//! Metadata between the envelope's JSON form and gRPC's `MetadataMap`.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use tonic::metadata::{
    AsciiMetadataKey, AsciiMetadataValue, BinaryMetadataKey, BinaryMetadataValue, KeyAndValueRef,
    MetadataMap,
};

use crate::envelope::Metadata;

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

/// Turns a client's metadata into request metadata for the backend.
pub fn to_grpc(metadata: &Metadata, into: &mut MetadataMap) -> Result<(), String> {
    for (key, value) in metadata {
        if is_reserved(key) {
            return Err(format!("metadata key `{key}` is reserved"));
        }
        if key.ends_with("-bin") {
            let key = BinaryMetadataKey::from_bytes(key.as_bytes())
                .map_err(|_| format!("metadata key `{key}` is not a valid header name"))?;
            let bytes = BASE64
                .decode(value)
                .map_err(|err| format!("metadata `{key}` is not base64: {err}"))?;
            into.append_bin(key, BinaryMetadataValue::from_bytes(&bytes));
        } else {
            let parsed_key = AsciiMetadataKey::from_bytes(key.as_bytes())
                .map_err(|_| format!("metadata key `{key}` is not a valid header name"))?;
            let value = AsciiMetadataValue::try_from(value.as_str())
                .map_err(|_| format!("metadata `{key}` has a value that is not printable ASCII"))?;
            into.append(parsed_key, value);
        }
    }
    Ok(())
}

/// The application metadata in a backend's headers or trailers, or `None`
/// where there is none.
pub fn from_grpc(map: &MetadataMap) -> Option<Metadata> {
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
pub fn encode_base64(bytes: &[u8]) -> String {
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
