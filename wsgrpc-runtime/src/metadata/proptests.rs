//! Property-based fuzzing of [`canonical`], which every client's metadata
//! goes through before the identity check, the authenticator and the
//! backend see it.
//!
//! Short runs inside `cargo test`; a long one:
//! `PROPTEST_CASES=100000 cargo test --release -p wsgrpc-runtime metadata::proptests`.
//! A failing case is saved under `wsgrpc-runtime/proptest-regressions/`
//! and replayed first on every later run.

use base64::Engine as _;
use proptest::prelude::*;
use tonic::metadata::{KeyRef, MetadataMap};

use super::{ENTRY_OVERHEAD, MetadataError, MetadataLimits, canonical, entry, to_grpc};
use crate::metadata::Metadata;

/// Names that belong to HTTP/2 or to gRPC, which a client may never set,
/// in whatever case it writes them.
const RESERVED: &[&str] = &[
    "grpc-timeout",
    "grpc-encoding",
    "grpc-accept-encoding",
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "grpc-x",
    "te",
    "content-type",
    "content-length",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "trailer",
    "date",
    ":path",
    ":authority",
    ":method",
    ":scheme",
    ":status",
];

/// Keys an authenticator might set as a connection's identity.
const IDENTITY: &[&str] = &["x-user-id", "authorization", "x-tenant-bin"];

/// `name` with each ASCII letter in a random case.
fn random_case(name: &'static str) -> impl Strategy<Value = String> {
    any::<u64>().prop_map(move |mask| {
        name.chars()
            .enumerate()
            .map(|(i, c)| {
                if mask >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    })
}

/// One of `names` in a random case.
fn any_case_of(names: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(names).prop_flat_map(random_case)
}

/// One of `names` with a letter swapped for a non-ASCII one that Unicode
/// folds to the same letter: the Kelvin sign for `k`, long s for `s`,
/// dotless and dotted i for `i`.
fn lookalike_of(names: &'static [&'static str]) -> impl Strategy<Value = String> {
    (prop::sample::select(names), any::<prop::sample::Index>()).prop_map(|(name, at)| {
        let swappable: Vec<usize> = name
            .char_indices()
            .filter(|(_, c)| matches!(c, 'k' | 's' | 'i'))
            .map(|(i, _)| i)
            .collect();
        if swappable.is_empty() {
            return name.to_ascii_uppercase();
        }
        let i = swappable[at.index(swappable.len())];
        let swapped = match &name[i..=i] {
            "k" => "\u{212A}",
            "s" => "\u{17F}",
            _ if i.is_multiple_of(2) => "\u{131}",
            _ => "\u{130}",
        };
        format!("{}{swapped}{}", &name[..i], &name[i + 1..])
    })
}

/// Any key, biased toward what a header name looks like and toward the
/// names the bridge must refuse or compare.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any_case_of(RESERVED),
        3 => any_case_of(IDENTITY),
        2 => lookalike_of(RESERVED),
        2 => lookalike_of(IDENTITY),
        4 => ("[a-zA-Z0-9_.-]{1,16}", prop::sample::select(&["", "", "-bin", "-BIN", "-Bin"][..]))
            .prop_map(|(name, suffix)| format!("{name}{suffix}")),
        1 => "[!-~]{0,12}",
        1 => "[\\x00-\\x20\\x7f]{1,3}[a-z-]{0,4}",
        1 => "\\PC{0,8}",
        1 => any::<String>(),
        1 => Just(String::new()),
        1 => (1usize..10_000).prop_map(|n| "k".repeat(n)),
    ]
}

/// Any value, biased toward header values, base64 and the size limit.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[ -~]{0,32}",
        2 => prop::collection::vec(any::<u8>(), 0..32)
            .prop_map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes)),
        1 => prop::collection::vec(any::<u8>(), 0..32)
            .prop_map(|bytes| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)),
        1 => (0usize..10_000).prop_map(|n| "v".repeat(n)),
        1 => "[\\x00-\\x1f\\x7f]{1,4}",
        1 => "[ \t]{0,3}[a-z]{0,3}[ \t]{0,3}",
        1 => "\\PC{0,8}",
        1 => any::<String>(),
    ]
}

/// A client's metadata: a few entries of any kind, or well-formed ones
/// with a few of any kind among them, or past the limit on entries.
fn metadata() -> impl Strategy<Value = Metadata> {
    prop_oneof![
        4 => prop::collection::vec((key(), value()), 0..12)
            .prop_map(|entries| entries.into_iter().collect()),
        4 => (well_formed(), prop::collection::vec((key(), value()), 0..3)).prop_map(
            |(mut metadata, entries)| {
                metadata.extend(entries);
                metadata
            }
        ),
        1 => prop::collection::vec((key(), value()), 60..72)
            .prop_map(|entries| entries.into_iter().collect()),
    ]
}

/// The default limits, or any others (zero included).
fn limits() -> impl Strategy<Value = MetadataLimits> {
    prop_oneof![
        3 => Just(MetadataLimits::default()),
        1 => (0usize..80, 0usize..12_000).prop_map(|(max_entries, max_bytes)| MetadataLimits {
            max_entries,
            max_bytes,
        }),
    ]
}

/// Metadata that any gRPC server takes: `x-` keys in any case, none given
/// twice, printable values and base64 for `-bin`.
fn well_formed() -> impl Strategy<Value = Metadata> {
    let entry = (
        "[a-zA-Z0-9_.]{0,12}",
        any::<bool>(),
        "[ -~]{0,24}",
        prop::collection::vec(any::<u8>(), 0..24),
    )
        .prop_map(|(name, binary, text, bytes)| {
            // `x-bin` would be a binary key with a text value.
            let name = if name.eq_ignore_ascii_case("bin") {
                format!("_{name}")
            } else {
                name
            };
            if binary {
                (
                    format!("X-{name}-Bin"),
                    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes),
                )
            } else {
                (format!("x-{name}"), text)
            }
        });
    prop::collection::vec(entry, 0..16).prop_map(|entries| {
        let mut metadata = Metadata::new();
        for (key, value) in entries {
            if !metadata
                .keys()
                .any(|known| known.eq_ignore_ascii_case(&key))
            {
                metadata.insert(key, value);
            }
        }
        metadata
    })
}

/// Valid keys with values of any kind.
fn values_of_any_kind() -> impl Strategy<Value = Metadata> {
    let entry = prop_oneof![
        ("[xX]-[a-z0-9]{1,6}", value()),
        ("[xX]-[a-z0-9]{1,6}", value()).prop_map(|(key, value)| (format!("{key}-bin"), value)),
    ];
    (well_formed(), prop::collection::vec(entry, 1..4)).prop_map(|(mut metadata, entries)| {
        for (key, value) in entries {
            if !metadata
                .keys()
                .any(|known| known.eq_ignore_ascii_case(&key))
            {
                metadata.insert(key, value);
            }
        }
        metadata
    })
}

/// Bytes as the limit counts them.
fn bytes_of(metadata: &Metadata) -> usize {
    metadata
        .iter()
        .map(|(key, value)| key.len() + value.len() + ENTRY_OVERHEAD)
        .sum()
}

fn over_limits(metadata: &Metadata, limits: &MetadataLimits) -> bool {
    metadata.len() > limits.max_entries || bytes_of(metadata) > limits.max_bytes
}

/// A header name as HTTP/2 sends it: an RFC 9110 token, lower case.
fn is_lower_case_token(key: &str) -> bool {
    !key.is_empty()
        && key.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

fn is_reserved_name(key: &str) -> bool {
    key.starts_with("grpc-") || key.starts_with(':') || RESERVED.contains(&key)
}

/// Whether two keys are the same name in Unicode's eyes.
fn same_in_any_case(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase() || a.to_uppercase() == b.to_uppercase()
}

/// The keys of a gRPC metadata map, sorted, one per entry.
fn grpc_keys(map: &MetadataMap) -> Vec<String> {
    let mut keys: Vec<String> = map
        .keys()
        .map(|key| match key {
            KeyRef::Ascii(key) => key.as_str().to_owned(),
            KeyRef::Binary(key) => key.as_str().to_owned(),
        })
        .collect();
    keys.sort();
    keys
}

/// What the connection asks before a call: does the client set a key
/// that is the connection's identity?
fn sets_identity_key(metadata: &Metadata, identity: &Metadata) -> bool {
    metadata.keys().any(|key| identity.contains_key(key))
}

proptest! {

    /// `canonical` answers every input; what it accepts is what HTTP/2
    /// will send, within the limits, and `to_grpc` takes it whole; what it
    /// refuses as too large is exactly what is over the limits.
    #[test]
    fn canonical_metadata_is_what_goes_on_the_wire(
        metadata in metadata(),
        limits in limits(),
    ) {
        let over = over_limits(&metadata, &limits);
        match canonical(metadata.clone(), &limits) {
            Ok(out) => {
                prop_assert!(!over, "accepted over the limits {limits:?}: {metadata:?}");
                prop_assert!(!over_limits(&out, &limits), "{out:?}");
                // Nothing merged, dropped or changed but the keys' case.
                prop_assert_eq!(out.len(), metadata.len(), "{:?}", out);
                for (key, value) in &metadata {
                    prop_assert_eq!(out.get(&key.to_ascii_lowercase()), Some(value), "{:?}", key);
                }
                for key in out.keys() {
                    prop_assert!(is_lower_case_token(key), "not a lower-case header name: {key:?}");
                    prop_assert!(!is_reserved_name(key), "reserved key accepted: {key:?}");
                    prop_assert!(!super::is_reserved(key), "reserved key accepted: {key:?}");
                }
                let mut map = MetadataMap::new();
                prop_assert_eq!(to_grpc(&out, &mut map), Ok(()), "{:?}", out);
                prop_assert_eq!(grpc_keys(&map), out.keys().cloned().collect::<Vec<_>>());
                prop_assert_eq!(map.len(), out.len());
                for key in out.keys() {
                    let binary = key.ends_with("-bin");
                    prop_assert_eq!(map.get_bin(key.as_str()).is_some(), binary, "{:?}", key);
                    prop_assert_eq!(map.get(key.as_str()).is_some(), !binary, "{:?}", key);
                }
                // Canonical metadata is its own canonical form.
                prop_assert_eq!(canonical(out.clone(), &limits), Ok(out));
            }
            Err(MetadataError::TooLarge(message)) => {
                prop_assert!(over, "too large within the limits {limits:?} ({message}): {metadata:?}");
            }
            Err(MetadataError::Invalid(message)) => {
                prop_assert!(!over, "over the limits {limits:?} but {message:?}: {metadata:?}");
                // Something is wrong with it: a key given twice in two
                // spellings, or an entry that cannot go on the wire.
                let mut lower: Vec<String> = metadata.keys().map(|k| k.to_ascii_lowercase()).collect();
                lower.sort();
                lower.dedup();
                let twice = lower.len() < metadata.len();
                let bad = metadata
                    .iter()
                    .any(|(key, value)| entry(&key.to_ascii_lowercase(), value).is_err());
                prop_assert!(twice || bad, "refused ({message}): {metadata:?}");
            }
        }
    }

    /// A key that is an identity key in another case comes out as the
    /// identity key, so the connection's check sees it; a key that only
    /// Unicode folds to one does not come out at all.
    #[test]
    fn identity_keys_cannot_hide_behind_case(
        spelled in prop_oneof![any_case_of(IDENTITY), lookalike_of(IDENTITY)],
        value in prop_oneof!["[ -~]{0,16}", Just("AAEC".to_owned())],
        others in prop_oneof![2 => well_formed(), 1 => metadata()],
    ) {
        let identity: Metadata = IDENTITY
            .iter()
            .map(|key| ((*key).to_owned(), "from-the-bridge".to_owned()))
            .collect();
        let mut metadata = others;
        metadata.insert(spelled.clone(), value);
        let Ok(out) = canonical(metadata.clone(), &MetadataLimits::default()) else {
            return Ok(());
        };
        if IDENTITY.iter().any(|key| key.eq_ignore_ascii_case(&spelled)) {
            prop_assert!(
                sets_identity_key(&out, &identity),
                "{spelled:?} got past the identity check: {out:?}"
            );
        }
        for key in out.keys() {
            for identity_key in IDENTITY {
                if same_in_any_case(key, identity_key) {
                    prop_assert_eq!(key.as_str(), *identity_key);
                }
            }
        }
    }

    /// What the bridge accepts, the backend reads as it was sent: a text
    /// value is gRPC's ASCII-Value (space and printable ASCII) and reads
    /// back as the same string (`MetadataValue::to_str`), a `-bin` value as
    /// the bytes its base64 spells.
    #[test]
    fn the_backend_reads_accepted_values_as_sent(metadata in values_of_any_kind()) {
        let Ok(out) = canonical(metadata, &MetadataLimits::default()) else {
            return Ok(());
        };
        let mut map = MetadataMap::new();
        prop_assert_eq!(to_grpc(&out, &mut map), Ok(()), "{:?}", out);
        for (key, value) in &out {
            if key.ends_with("-bin") {
                let sent = map.get_bin(key.as_str()).and_then(|v| v.to_bytes().ok());
                let spelt = super::BASE64.decode(value).ok();
                prop_assert_eq!(sent.as_deref(), spelt.as_deref(), "{}: {:?}", key, value);
            } else {
                let ascii = value.bytes().all(|b| (0x20..=0x7e).contains(&b));
                prop_assert!(ascii, "{}: {:?} is not gRPC's ASCII-Value", key, value);
                let sent = map.get(key.as_str()).and_then(|v| v.to_str().ok());
                prop_assert_eq!(sent, Some(value.as_str()), "{}", key);
            }
        }
    }

    /// Metadata any gRPC server takes is taken, its keys lower-cased.
    #[test]
    fn well_formed_metadata_is_accepted(metadata in well_formed()) {
        let out = canonical(metadata.clone(), &MetadataLimits::default());
        let lower: Metadata = metadata
            .iter()
            .map(|(key, value)| (key.to_ascii_lowercase(), value.clone()))
            .collect();
        prop_assert_eq!(out, Ok(lower));
    }
}

/// Found by the fuzz target `metadata` (fuzz/) and the property above
/// (`{"X-0": "®"}`), before `entry` checked text values itself: a text value
/// with characters past ASCII was accepted. http's `HeaderValue::from_str`,
/// under tonic's `AsciiMetadataValue::try_from`, takes bytes 0x80–0xFF
/// (obs-text), so the value went to the backend as raw UTF-8, which gRPC's
/// ASCII-Value does not allow and which a tonic backend cannot read as text
/// (`to_str` fails; the test backend echoed `""`).
#[test]
fn a_text_value_that_is_not_ascii_is_refused() {
    for value in ["Żʡ˙", "caf\u{e9}", "\u{80}", "®"] {
        let metadata = Metadata::from([("x-name".to_owned(), value.to_owned())]);
        let result = canonical(metadata, &MetadataLimits::default());
        assert!(
            matches!(&result, Err(MetadataError::Invalid(_))),
            "{value:?}: {result:?}"
        );
    }
}
