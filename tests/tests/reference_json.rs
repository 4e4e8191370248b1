//! The bridge's proto3 JSON against the reference implementation, Google's
//! protobuf for Python (`json_format`, from PyPI into `.venv` by
//! `scripts/install-python`).
//!
//! Messages of the rich fixture (`rich.shop.v1.Order`, which reaches every
//! field shape) are generated from a fixed seed, and with them the cases
//! kept in `tests/reference/corpus.json`. Each goes through the real bridge
//! to a real backend that knows no types ([`Mirror`]):
//!
//! - writing: the backend answers with the message; the bridge's JSON must
//!   equal the reference's (as JSON values), or both must refuse it. So
//!   too with the options of calls that name their method bare (fields at
//!   their defaults) and of a bridge with every option on.
//! - reading: the reference's JSON for the message is sent to the bridge;
//!   the backend must receive the identical message.
//! - refusing: the reference's JSON with one value replaced by a wrong one
//!   (or an unknown field added): the bridge must accept exactly what the
//!   reference accepts, pass on the identical message, and refuse the rest
//!   with `INVALID_ARGUMENT` naming the field.
//!
//! `WSGRPC_REFERENCE_SEED` and `WSGRPC_REFERENCE_CASES` change the seed
//! (printed at the start) and the number of messages. A mismatch prints the
//! case as a corpus entry: add it to the corpus, and it is replayed on every
//! run from then on.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use proptest::prelude::Rng;
use proptest::test_runner::{RngAlgorithm, TestRng};
use prost::Message as _;
use serde_json::{Value, json};
use wsgrpc_runtime::prost_reflect::{
    self, DynamicMessage, Kind, MapKey, MessageDescriptor, Value as Field,
};
use wsgrpc_runtime::{AllowedOrigins, Bridge, JsonOptions};
use wsgrpc_tests::client::WsClient;
use wsgrpc_tests::mirror::Mirror;
use wsgrpc_tests::{RunningBridge, rich_message};

const ROOT: &str = "rich.shop.v1.Order";
const DEFAULT_SEED: u64 = 14;
const DEFAULT_CASES: usize = 400;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The reference, running as a child process.
struct Reference {
    child: std::process::Child,
    _descriptors: tempfile::TempPath,
}

impl Reference {
    /// The reference, knowing every file of `pool`.
    fn start(pool: &prost_reflect::DescriptorPool) -> Self {
        let python = repo_root().join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/install-python (scripts/test does)",
            python.display()
        );
        let set = tempfile::NamedTempFile::new().unwrap();
        // Every file the bridge knows, the well-known types included.
        let files = prost_types::FileDescriptorSet {
            file: pool
                .files()
                .map(|file| file.file_descriptor_proto().clone())
                .collect(),
        };
        std::fs::write(set.path(), files.encode_to_vec()).unwrap();
        let child = Command::new(python)
            .arg(repo_root().join("tests/reference/protobuf_json.py"))
            .arg(set.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        Self {
            child,
            _descriptors: set.into_temp_path(),
        }
    }

    /// Answers to `requests`, in order. A thread writes while this one
    /// reads, so that neither pipe fills up.
    fn ask(&mut self, requests: Vec<Value>) -> Vec<Value> {
        let mut stdin = self.child.stdin.take().unwrap();
        let count = requests.len();
        let writer = std::thread::spawn(move || {
            for request in requests {
                writeln!(stdin, "{request}").unwrap();
            }
            stdin
        });
        let stdout = self.child.stdout.as_mut().unwrap();
        let mut reader = BufReader::new(stdout);
        let mut answers = Vec::with_capacity(count);
        for _ in 0..count {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            answers.push(serde_json::from_str(&line).expect("the reference answers JSON"));
        }
        self.child.stdin = Some(writer.join().unwrap());
        answers
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// A source of pseudo-random choices from a seed.
struct Choices(TestRng);

impl Choices {
    fn new(seed: u64) -> Self {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        Self(TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
    }

    fn below(&mut self, n: usize) -> usize {
        (self.0.next_u64() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Clone>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())].clone()
    }

    fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }
}

const STRINGS: &[&str] = &[
    "",
    "x",
    "ünïcödé",
    "\"quoted\" \\ back",
    "tab\tnew\nline",
    "\u{0}\u{1f}\u{7f}",
    "𝄞 astral",
    "\u{2028}\u{2029}",
    "<script>&amp;",
];

/// Paths that survive the trip through lowerCamelCase.
const MASK_PATHS: &[&str] = &[
    "note",
    "scalars.f_int64",
    "well_known.created_at",
    "id",
    "a.b.c",
];

const MAX_SECONDS: i64 = 315_576_000_000;
const MIN_TIMESTAMP: i64 = -62_135_596_800;
const MAX_TIMESTAMP: i64 = 253_402_300_799;

fn nanos(choices: &mut Choices) -> i32 {
    match choices.below(5) {
        0 => 0,
        1 => 999_999_999,
        2 => (choices.below(1000) * 1_000_000) as i32,
        3 => (choices.below(1_000_000) * 1000) as i32,
        _ => choices.below(1_000_000_000) as i32,
    }
}

/// A message of type `descriptor`, each field set or not at random, values
/// often at the edges of their ranges.
fn message(descriptor: &MessageDescriptor, depth: usize, choices: &mut Choices) -> DynamicMessage {
    let mut message = DynamicMessage::new(descriptor.clone());
    match descriptor.full_name() {
        "google.protobuf.Timestamp" => {
            let seconds = match choices.below(4) {
                0 => MIN_TIMESTAMP,
                1 => MAX_TIMESTAMP,
                2 => 0,
                _ => {
                    MIN_TIMESTAMP + (choices.u64() % (MAX_TIMESTAMP - MIN_TIMESTAMP) as u64) as i64
                }
            };
            message.set_field_by_name("seconds", Field::I64(seconds));
            message.set_field_by_name("nanos", Field::I32(nanos(choices)));
            return message;
        }
        "google.protobuf.Duration" => {
            let seconds = match choices.below(4) {
                0 => MAX_SECONDS,
                1 => 0,
                _ => (choices.u64() % MAX_SECONDS as u64) as i64,
            };
            let nanos = if seconds == MAX_SECONDS {
                0
            } else {
                nanos(choices)
            };
            let sign = if choices.chance(50) { -1 } else { 1 };
            message.set_field_by_name("seconds", Field::I64(sign * seconds));
            message.set_field_by_name("nanos", Field::I32(sign as i32 * nanos));
            return message;
        }
        "google.protobuf.FieldMask" => {
            let paths = (0..choices.below(3))
                .map(|_| Field::String(choices.pick(MASK_PATHS).to_owned()))
                .collect();
            message.set_field_by_name("paths", Field::List(paths));
            return message;
        }
        "google.protobuf.Value" => {
            let value = json_value(depth, choices);
            let value = prost_reflect::DynamicMessage::deserialize(descriptor.clone(), value)
                .expect("a JSON value is a Value");
            return value;
        }
        "google.protobuf.Struct" => {
            let mut object = serde_json::Map::new();
            for _ in 0..choices.below(4) {
                object.insert(choices.pick(STRINGS).to_owned(), json_value(depth, choices));
            }
            return DynamicMessage::deserialize(descriptor.clone(), Value::Object(object))
                .expect("a JSON object is a Struct");
        }
        "google.protobuf.Any" => {
            let types = [
                "rich.common.v1.Money",
                "rich.shop.v1.Order.Line",
                "rich.shop.v1.Item",
                "google.protobuf.Duration",
                "google.protobuf.Timestamp",
                "google.protobuf.Struct",
                "google.protobuf.Value",
                "google.protobuf.Int64Value",
                "google.protobuf.Empty",
                "google.protobuf.FieldMask",
                "google.protobuf.Any",
            ];
            let name = choices.pick(&types);
            let inner = descriptor.parent_pool().get_message_by_name(name).unwrap();
            let inner = self::message(&inner, depth + 1, choices);
            message.set_field_by_name(
                "type_url",
                Field::String(format!("type.googleapis.com/{name}")),
            );
            message.set_field_by_name("value", Field::Bytes(inner.encode_to_vec().into()));
            return message;
        }
        _ => {}
    }
    let mut oneofs_set = Vec::new();
    for field in descriptor.fields() {
        if let Some(oneof) = field.containing_oneof() {
            if oneofs_set.contains(&oneof.name().to_owned()) {
                continue;
            }
            if !choices.chance(40) {
                continue;
            }
            oneofs_set.push(oneof.name().to_owned());
        } else if !choices.chance(60) {
            continue;
        }
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                unreachable!()
            };
            let key_field = entry.map_entry_key_field();
            let value_field = entry.map_entry_value_field();
            let mut map = std::collections::HashMap::new();
            for _ in 0..choices.below(4) {
                let key = match scalar(&key_field.kind(), choices) {
                    Field::Bool(v) => MapKey::Bool(v),
                    Field::I32(v) => MapKey::I32(v),
                    Field::I64(v) => MapKey::I64(v),
                    Field::U32(v) => MapKey::U32(v),
                    Field::U64(v) => MapKey::U64(v),
                    Field::String(v) => MapKey::String(v),
                    other => unreachable!("{other:?} is no map key"),
                };
                if let Some(value) = value_of(&value_field.kind(), depth, choices) {
                    map.insert(key, value);
                }
            }
            message.set_field(&field, Field::Map(map));
        } else if field.is_list() {
            let values: Vec<Field> = (0..choices.below(4))
                .filter_map(|_| value_of(&field.kind(), depth, choices))
                .collect();
            message.set_field(&field, Field::List(values));
        } else if let Some(value) = value_of(&field.kind(), depth, choices) {
            message.set_field(&field, value);
        }
    }
    message
}

fn value_of(kind: &Kind, depth: usize, choices: &mut Choices) -> Option<Field> {
    match kind {
        Kind::Message(descriptor) => {
            (depth < 4).then(|| Field::Message(message(descriptor, depth + 1, choices)))
        }
        other => Some(scalar(other, choices)),
    }
}

fn scalar(kind: &Kind, choices: &mut Choices) -> Field {
    let edge = choices.chance(60);
    match kind {
        Kind::Double => Field::F64(if edge {
            choices.pick(&[
                0.0,
                -0.0,
                0.1,
                -1.5,
                1e300,
                -1e-300,
                f64::MAX,
                f64::MIN_POSITIVE,
                5e-324,
                9007199254740993.0,
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
            ])
        } else {
            f64::from_bits(choices.u64()).clamp(-1e308, 1e308)
        }),
        Kind::Float => Field::F32(if edge {
            choices.pick(&[
                0.0,
                -0.0,
                0.1,
                3.4028235e38,
                1e-45,
                f32::MIN_POSITIVE,
                16777217.0,
                f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
            ])
        } else {
            let value = f32::from_bits(choices.u64() as u32);
            if value.is_finite() { value } else { 1.25 }
        }),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Field::I32(if edge {
            choices.pick(&[0, 1, -1, i32::MIN, i32::MAX])
        } else {
            choices.u64() as i32
        }),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Field::I64(if edge {
            choices.pick(&[0, -1, i64::MIN, i64::MAX, 1 << 53, (1 << 53) + 1])
        } else {
            choices.u64() as i64
        }),
        Kind::Uint32 | Kind::Fixed32 => Field::U32(if edge {
            choices.pick(&[0, 1, u32::MAX])
        } else {
            choices.u64() as u32
        }),
        Kind::Uint64 | Kind::Fixed64 => Field::U64(if edge {
            choices.pick(&[0, u64::MAX, (1 << 53) + 1])
        } else {
            choices.u64()
        }),
        Kind::Bool => Field::Bool(choices.chance(50)),
        Kind::String => Field::String(if edge {
            choices.pick(STRINGS).to_owned()
        } else {
            format!("s{}", choices.u64())
        }),
        Kind::Bytes => {
            let bytes: Vec<u8> = (0..choices.below(9)).map(|_| choices.u64() as u8).collect();
            Field::Bytes(bytes.into())
        }
        Kind::Enum(descriptor) => {
            let numbers: Vec<i32> = descriptor.values().map(|value| value.number()).collect();
            // Now and then a number the enum does not name.
            Field::EnumNumber(if choices.chance(10) {
                7
            } else {
                choices.pick(&numbers)
            })
        }
        Kind::Message(_) => unreachable!("messages are not scalars"),
    }
}

/// A JSON value as a `google.protobuf.Value` holds it: finite numbers,
/// nulls inside lists and objects too.
fn json_value(depth: usize, choices: &mut Choices) -> Value {
    let leaf = depth >= 4 || choices.chance(60);
    match choices.below(if leaf { 4 } else { 6 }) {
        0 => Value::Null,
        1 => Value::Bool(choices.chance(50)),
        2 => json!(choices.pick(&[0.0, -2.5, 1e21, 123456789.125, 1e-7, 9007199254740993.0])),
        3 => Value::String(choices.pick(STRINGS).to_owned()),
        4 => Value::Array(
            (0..choices.below(4))
                .map(|_| json_value(depth + 1, choices))
                .collect(),
        ),
        _ => Value::Object(
            (0..choices.below(4))
                .map(|_| {
                    (
                        choices.pick(STRINGS).to_owned(),
                        json_value(depth + 1, choices),
                    )
                })
                .collect(),
        ),
    }
}

/// Whether two JSON values are the same, numbers compared by value (`1`
/// and `1.0` are one number) and floats written at a float's precision by
/// one side equal to the same float written otherwise.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x.abs() <= f32::MAX as f64 && (x as f32) == (y as f32) && x.fract() != 0.0)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, x)| y.get(key).is_some_and(|y| same_json(x, y)))
        }
        _ => a == b,
    }
}

/// Where two JSON values first differ, and how.
fn difference(a: &Value, b: &Value, path: &str) -> String {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (key, x_value) in x {
                match y.get(key) {
                    Some(y_value) if !same_json(x_value, y_value) => {
                        return difference(x_value, y_value, &format!("{path}.{key}"));
                    }
                    None => return format!("{path}.{key}: {x_value} against nothing"),
                    _ => {}
                }
            }
            match y.keys().find(|key| !x.contains_key(*key)) {
                Some(key) => format!("{path}.{key}: nothing against {}", y[key]),
                None => format!("{path}: ?"),
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            match x.iter().zip(y).position(|(x, y)| !same_json(x, y)) {
                Some(index) => difference(&x[index], &y[index], &format!("{path}[{index}]")),
                None => format!("{path}: ?"),
            }
        }
        _ => format!("{path}: {a} against {b}"),
    }
}

/// A wrong value for a JSON position, or an unknown field.
fn mutate(json: &Value, choices: &mut Choices) -> Option<(String, String)> {
    let mut leaves = Vec::new();
    fn walk(value: &Value, path: &mut Vec<String>, leaves: &mut Vec<Vec<String>>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    path.push(key.clone());
                    leaves.push(path.clone());
                    walk(value, path, leaves);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (index, value) in items.iter().enumerate() {
                    path.push(index.to_string());
                    leaves.push(path.clone());
                    walk(value, path, leaves);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    walk(json, &mut Vec::new(), &mut leaves);
    let wrong = [
        "\"x\"",
        "1.5",
        "-1",
        "1e2",
        "\"1e2\"",
        "18446744073709551616",
        "\"-9223372036854775809\"",
        "2147483648",
        "null",
        "[]",
        "{}",
        "\"NaN\"",
        "\"Infinity\"",
        "1e39",
        "true",
        "\"\"",
        "\" 1\"",
        "\"AAEC+g\"",
        "\"AAEC-_\"",
        "\"--1s\"",
        "\"1.5\"",
        "\"0001-01-01T00:00:00+01:00\"",
        "\"2024-02-30T00:00:00Z\"",
        "\"a_b\"",
        "{\"@type\":\"type.googleapis.com/no.Such\"}",
        "[null]",
        "{\"\":null}",
    ];
    if leaves.is_empty() || choices.chance(8) {
        let mut value = json.clone();
        value
            .as_object_mut()?
            .insert("noSuchField".into(), json!(1));
        return Some(("noSuchField".into(), value.to_string()));
    }
    let path = choices.pick(&leaves);
    let replacement = choices.pick(&wrong);
    // Splice the replacement in as text, so that numbers beyond what
    // serde_json holds reach both sides as written.
    let marker = "\u{1}MUTATED\u{1}";
    let mut value = json.clone();
    let mut slot = &mut value;
    for step in &path {
        slot = match slot {
            Value::Object(map) => map.get_mut(step)?,
            Value::Array(items) => items.get_mut(step.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    *slot = Value::String(marker.into());
    let text = value
        .to_string()
        .replace(&Value::String(marker.into()).to_string(), replacement);
    Some((format!("{} = {replacement}", path.join(".")), text))
}

/// Where prost-reflect 0.16, the bridge's engine, differs from the
/// reference; each was found by this test. A mismatch that is none of these
/// fails the test.
const KNOWN_DIFFERENCES: &[(&str, &[&str])] = &[
    (
        "An Any holding google.protobuf.Empty: the bridge writes and requires \
         `\"value\": {}`, the reference writes the bare `{\"@type\": …}` and \
         refuses `value`",
        &[
            "payload.value: {} against nothing",
            "payload.value.value: {} against nothing",
            "expected 'value' field",
            "has no field named \\\"value\\\"",
        ],
    ),
    (
        "A leap second (23:59:60) in a Timestamp: the bridge reads it as the \
         next second, the reference refuses it",
        &["second must be in 0..59"],
    ),
];

fn known_difference(mismatch: &str) -> Option<&'static str> {
    KNOWN_DIFFERENCES
        .iter()
        .find(|(_, patterns)| patterns.iter().any(|pattern| mismatch.contains(pattern)))
        .map(|(name, _)| *name)
}

/// What the bridge did with one call: the JSON it answered, or the error.
#[derive(Debug)]
enum Outcome {
    Json(Value),
    Error { code: i64, message: String },
}

async fn call(client: &mut WsClient, method: &str, id: usize, payload: &str) -> Outcome {
    let id = id.to_string();
    client
        .send_text(&format!(
            r#"{{"type":"request","method":"{method}","id":"{id}","payload":{payload}}}"#
        ))
        .await;
    let frames = client.recv_call(&id).await;
    let last = frames.last().unwrap();
    match last.get("error") {
        Some(error) => Outcome::Error {
            code: last["code"].as_i64().unwrap_or_default(),
            message: error.as_str().unwrap_or_default().to_owned(),
        },
        None => Outcome::Json(last["payload"].clone()),
    }
}

/// One way to write JSON: the bridge's options, the reference's, and the
/// method name that gets them.
struct Writing {
    name: &'static str,
    options: JsonOptions,
    reference: Value,
    method: &'static str,
}

/// How the bridge's writing of a message differs from the reference's
/// answer for it, if it does.
fn written_mismatch(outcome: &Outcome, answer: &Value) -> Option<String> {
    match (outcome, answer.get("json")) {
        (Outcome::Json(ours), Some(theirs)) if same_json(ours, theirs) => None,
        (Outcome::Json(ours), Some(theirs)) => Some(format!(
            "bridge against reference at {}",
            difference(ours, theirs, "")
        )),
        (Outcome::Error { .. }, None) => None,
        (Outcome::Error { message, .. }, Some(_)) => Some(format!("the bridge refused: {message}")),
        (Outcome::Json(_), None) => Some(format!("the reference refused: {answer}")),
    }
}

/// `proto` with its top-level fields in descending order of number, each
/// field's records in their order.
fn fields_reversed(proto: &[u8]) -> Bytes {
    let mut records: Vec<(u32, &[u8])> = Vec::new();
    let mut rest = proto;
    while !rest.is_empty() {
        let before = rest;
        let (number, wire) = prost::encoding::decode_key(&mut rest).unwrap();
        prost::encoding::skip_field(wire, number, &mut rest, Default::default()).unwrap();
        records.push((number, &before[..before.len() - rest.len()]));
    }
    // A stable sort keeps each field's records in order.
    records.sort_by_key(|(number, _)| std::cmp::Reverse(*number));
    let joined: Vec<u8> = records
        .iter()
        .flat_map(|(_, record)| *record)
        .copied()
        .collect();
    joined.into()
}

/// The case that failed, as a corpus entry.
fn corpus_entry(kind: &str, type_name: &str, proto: Option<&[u8]>, json: Option<&str>) -> Value {
    let mut entry = json!({"kind": kind, "type": type_name});
    if let Some(proto) = proto {
        entry["proto"] = json!(BASE64.encode(proto));
    }
    if let Some(json) = json {
        entry["json"] = json!(json);
    }
    entry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_writes_and_reads_proto3_json_as_the_reference_does() {
    let known = against_the_reference(
        &rich_message(ROOT),
        Some("tests/reference/corpus.json"),
        DEFAULT_CASES,
    )
    .await;
    // The known differences are still there; when one goes (a newer
    // prost-reflect), take it off the list.
    for (name, _) in KNOWN_DIFFERENCES {
        assert!(known.contains_key(name), "no longer differs: {name}");
    }
}

/// proto2 as well: closed enums, explicit defaults, groups, fields with
/// presence (`proto/fixtures/classic`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_writes_and_reads_proto2_json_as_the_reference_does() {
    let pool = protox::Compiler::new([repo_root().join("proto/fixtures")])
        .and_then(|mut compiler| {
            compiler.open_files(["classic/v1/classic.proto"])?;
            Ok(compiler.descriptor_pool())
        })
        .expect("the proto2 fixture compiles");
    let part = pool.get_message_by_name("classic.v1.Part").unwrap();
    against_the_reference(&part, None, DEFAULT_CASES / 4).await;
}

/// Messages of `descriptor` (those of the corpus file, and generated ones)
/// written and read by the bridge and by the reference; fails on any
/// difference but the known ones, which it counts by name.
async fn against_the_reference(
    descriptor: &MessageDescriptor,
    corpus: Option<&str>,
    default_cases: usize,
) -> BTreeMap<&'static str, usize> {
    let type_name = descriptor.full_name();
    let seed: u64 = std::env::var("WSGRPC_REFERENCE_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let cases: usize = std::env::var("WSGRPC_REFERENCE_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default_cases);
    eprintln!("{type_name}: seed {seed}, {cases} generated messages");
    let mut choices = Choices::new(seed);

    let corpus: Value = match corpus {
        Some(path) => {
            serde_json::from_str(&std::fs::read_to_string(repo_root().join(path)).unwrap()).unwrap()
        }
        None => json!({"cases": []}),
    };
    let mut protos: Vec<Bytes> = Vec::new();
    let mut kept_inputs: Vec<String> = Vec::new();
    for entry in corpus["cases"].as_array().unwrap() {
        assert_eq!(entry["type"], type_name, "{entry}");
        if let Some(proto) = entry["proto"].as_str() {
            protos.push(BASE64.decode(proto).unwrap().into());
        }
        if let Some(json) = entry["json"].as_str() {
            kept_inputs.push(json.to_owned());
        }
    }
    let kept_protos = protos.len();
    for _ in 0..cases {
        protos.push(message(descriptor, 0, &mut choices).encode_to_vec().into());
    }

    let mirror = Mirror::default();
    let backend = mirror.serve().await.unwrap();
    let every_option = JsonOptions::canonical()
        .emit_defaults(true)
        .enum_numbers(true)
        .proto_field_names(true);
    let bridge = |options: JsonOptions| {
        Bridge::builder()
            .backend_uri(format!("http://{backend}"))
            .service(Mirror::service(descriptor))
            .allowed_origins(AllowedOrigins::Any)
            .json_options(options)
    };
    let canonical = RunningBridge::start(
        bridge(JsonOptions::canonical()),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let every = RunningBridge::start(bridge(every_option), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut client = WsClient::connect(&canonical.url()).await;
    let mut every_client = WsClient::connect(&every.url()).await;

    let writings = [
        Writing {
            name: "canonical",
            options: JsonOptions::canonical(),
            reference: json!({}),
            method: "wsgrpc.test.v1.Mirror/Replay",
        },
        Writing {
            name: "bare method name: fields at their defaults",
            options: JsonOptions::canonical().emit_defaults(true),
            reference: json!({"emitDefaults": true}),
            method: "Replay",
        },
        Writing {
            name: "every option",
            options: every_option,
            reference: json!({"emitDefaults": true, "enumNumbers": true, "protoFieldNames": true}),
            method: "wsgrpc.test.v1.Mirror/Replay",
        },
    ];

    let mut reference = Reference::start(descriptor.parent_pool());
    let mut requests = Vec::new();
    for proto in &protos {
        let proto = BASE64.encode(proto);
        for writing in &writings {
            requests.push(
                json!({"op": "write", "type": type_name, "proto": proto, "options": writing.reference}),
            );
        }
    }
    let answers = reference.ask(requests);

    let mut mismatches: Vec<String> = Vec::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    // What to read: a label (the mutated path), the text, and the input
    // it is a variant of.
    let mut inputs: Vec<(String, String, Option<usize>)> = kept_inputs
        .iter()
        .map(|json| ("(corpus)".to_owned(), json.clone(), None))
        .collect();
    let mut id = 0;
    for (index, proto) in protos.iter().enumerate() {
        let answers = &answers[index * writings.len()..(index + 1) * writings.len()];
        mirror.reply_with(proto.clone());
        for (writing, answer) in writings.iter().zip(answers) {
            id += 1;
            let client = if writing.options == every_option {
                &mut every_client
            } else {
                &mut client
            };
            let outcome = call(client, writing.method, id, "{}").await;
            *counts.entry("written").or_default() += 1;
            if let Some(found) = written_mismatch(&outcome, answer) {
                mismatches.push(format!(
                    "writing ({}): {found}\n  {}",
                    writing.name,
                    corpus_entry("write", type_name, Some(proto), None)
                ));
            }
        }
        // The same fields in the opposite order on the wire, each field's
        // records still in order: the bridge cannot write these straight
        // from the bytes and decodes them first; the JSON must not change.
        let reordered = fields_reversed(proto);
        if reordered != *proto {
            mirror.reply_with(reordered.clone());
            id += 1;
            let outcome = call(&mut client, writings[0].method, id, "{}").await;
            *counts
                .entry("written, fields in reverse order")
                .or_default() += 1;
            if let Some(found) = written_mismatch(&outcome, &answers[0]) {
                mismatches.push(format!(
                    "writing (fields in reverse order): {found}\n  {}",
                    corpus_entry("write", type_name, Some(&reordered), None)
                ));
            }
        }
        // The reference's canonical JSON goes back in as a request, and
        // bad variants of it.
        if let Some(json) = answers[0].get("json") {
            inputs.push(("(the message)".to_owned(), json.to_string(), None));
            let base = inputs.len() - 1;
            if let Some((path, text)) = mutate(json, &mut choices) {
                inputs.push((path, text, Some(base)));
            }
        } else if index >= kept_protos {
            *counts.entry("not writable, refused by both").or_default() += 1;
        }
    }

    let mut requests = Vec::new();
    for (_, text, _) in &inputs {
        requests.push(json!({"op": "read", "type": type_name, "json": text}));
    }
    let answers = reference.ask(requests);
    let mut refused = vec![false; inputs.len()];
    for (index, ((path, text, base), answer)) in inputs.iter().zip(&answers).enumerate() {
        id += 1;
        let outcome = call(&mut client, "wsgrpc.test.v1.Mirror/Echo", id, text).await;
        let received = mirror.take_received();
        refused[index] = matches!(outcome, Outcome::Error { .. });
        // A variant of a message that is refused already may be refused
        // for that, not for what was changed.
        let base_refused = base.is_some_and(|base| refused[base]);
        let entry = corpus_entry("read", type_name, None, Some(text));
        match (&outcome, answer.get("proto")) {
            (Outcome::Json(_), Some(theirs)) => {
                *counts.entry("read, accepted by both").or_default() += 1;
                let ours = reference.ask(vec![json!({
                    "op": "canonical",
                    "type": type_name,
                    "proto": BASE64.encode(received.unwrap_or_default()),
                })]);
                if ours[0]["proto"] != *theirs {
                    mismatches.push(format!(
                        "reading `{path}`: the backend got {} where the reference reads {theirs}\n  {entry}",
                        ours[0]
                    ));
                }
            }
            (Outcome::Error { code, message }, None) => {
                *counts.entry("read, refused by both").or_default() += 1;
                let top = path.split(['.', ' ']).next().unwrap_or_default();
                if *code != 3 || received.is_some() {
                    mismatches.push(format!("refusing: code {code}, {message}\n  {entry}"));
                } else if !base_refused
                    && path != "(the message)"
                    && path != "(corpus)"
                    && !message.contains(&format!("field `{top}"))
                    && top != "noSuchField"
                {
                    mismatches.push(format!(
                        "refusing: the error does not name `{path}`: {message}\n  {entry}"
                    ));
                }
            }
            // Stricter than the reference on what the reference did not
            // write: it reads "1e2" as an integer, `true` as 1.0, " 1" as
            // an enum number and skips what is not base64; the proto3 JSON
            // mapping allows none of it.
            (Outcome::Error { code: 3, message }, Some(_))
                if path != "(the message)" && known_difference(message).is_none() =>
            {
                *counts
                    .entry("read, refused by the bridge only (stricter)")
                    .or_default() += 1;
                eprintln!("stricter: `{path}`: {message}");
            }
            (Outcome::Error { message, .. }, Some(_)) => mismatches.push(format!(
                "reading `{path}`: the bridge refused, the reference accepted: {message}\n  {entry}"
            )),
            (Outcome::Json(_), None) => mismatches.push(format!(
                "reading `{path}`: the bridge accepted, the reference refused: {answer}\n  {entry}"
            )),
        }
    }
    let mut known: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unknown = Vec::new();
    for mismatch in &mismatches {
        match known_difference(mismatch) {
            Some(name) => {
                if std::env::var_os("WSGRPC_REFERENCE_VERBOSE").is_some() {
                    eprintln!("known: {mismatch}");
                }
                *known.entry(name).or_default() += 1
            }
            None => unknown.push(mismatch),
        }
    }
    eprintln!("{counts:#?}");
    eprintln!("known differences: {known:#?}");
    for mismatch in &unknown {
        eprintln!("{mismatch}");
    }
    assert!(unknown.is_empty(), "{} mismatches", unknown.len());
    known
}

/// An `Any` resolves among the types of every service of the bridge, not
/// only those its own message's file imports.
#[tokio::test]
async fn any_resolves_against_every_service_of_the_bridge() {
    let mirror = Mirror::default();
    let backend = mirror.serve().await.unwrap();
    let builder = Bridge::builder()
        .backend_uri(format!("http://{backend}"))
        .service(Mirror::service(&rich_message(ROOT)))
        .service(wsgrpc_tests::test_v1::test_service_bridge::service())
        .allowed_origins(AllowedOrigins::Any);
    let bridge = RunningBridge::start(builder, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut client = WsClient::connect(&bridge.url()).await;
    let payload = r#"{"wellKnown":{"payload":{"@type":"type.googleapis.com/wsgrpc.test.v1.TestRequest","text":"hi","count":2}}}"#;
    let Outcome::Json(echoed) = call(&mut client, "wsgrpc.test.v1.Mirror/Echo", 1, payload).await
    else {
        panic!("the bridge refused an Any of a type it knows");
    };
    assert_eq!(
        echoed,
        serde_json::from_str::<Value>(payload).unwrap(),
        "written back the same"
    );
    let received = mirror.take_received().unwrap();
    let order = wsgrpc_tests::rich::shop::v1::Order::decode(received).unwrap();
    let any = order.well_known.unwrap().payload.unwrap();
    let request = wsgrpc_tests::test_v1::TestRequest::decode(any.value.as_slice()).unwrap();
    assert_eq!((request.text.as_str(), request.count), ("hi", 2));

    let unknown = payload.replace("wsgrpc.test.v1.TestRequest", "wsgrpc.test.v1.Nope");
    let Outcome::Error { code, message } =
        call(&mut client, "wsgrpc.test.v1.Mirror/Echo", 2, &unknown).await
    else {
        panic!("the bridge took an Any of a type it does not know");
    };
    assert_eq!(code, 3);
    assert!(message.contains("field `wellKnown.payload`"), "{message}");
}
