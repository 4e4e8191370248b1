//! Names: what is reserved, how a clash is escaped, and the name each
//! message and enum is exported as.

use std::collections::{HashMap, HashSet};

use crate::model::File;
use crate::names::unique_name;

/// What the generated files import `wsgrpc_runtime.ts` as (reserved).
pub(super) const RUNTIME_NAMESPACE: &str = "wsgrpc";

/// Names a generated declaration must not take, whitespace-separated: such
/// a name gets a `$` suffix. Reserved words (strict mode's included),
/// words TypeScript gives a meaning in types and declarations, globals
/// that generated code or its users refer to, and the namespace generated
/// files import the runtime as.
const RESERVED_NAMES: &str = "
    await break case catch class const continue debugger default delete do else enum
    export extends false finally for function if implements import in instanceof
    interface let new null package private protected public return static super switch
    this throw true try typeof var void while with yield

    abstract accessor any as asserts async bigint boolean constructor declare from get
    global infer intrinsic is keyof module namespace never number object of out override
    readonly require satisfies set string symbol type undefined unique unknown

    arguments eval globalThis Infinity NaN Object Function Array ReadonlyArray String
    Number Boolean Symbol BigInt Error Date RegExp Map Set WeakMap WeakSet WeakRef JSON
    Math Reflect Proxy Intl Promise PromiseLike Awaited Record Partial Required Readonly
    Pick Omit Exclude Extract NonNullable Parameters ReturnType InstanceType Iterable
    Iterator IterableIterator IteratorResult AsyncIterable AsyncIterator
    AsyncIterableIterator Generator AsyncGenerator ArrayBuffer SharedArrayBuffer DataView
    Int8Array Uint8Array Uint8ClampedArray Int16Array Uint16Array Int32Array Uint32Array
    Float32Array Float64Array BigInt64Array BigUint64Array AbortSignal AbortController
    WebSocket console setTimeout clearTimeout

    wsgrpc
";

/// `name`, with `$` appended when it is reserved.
pub(super) fn escape(name: &str) -> String {
    if RESERVED_NAMES
        .split_ascii_whitespace()
        .any(|reserved| reserved == name)
    {
        format!("{name}$")
    } else {
        name.to_owned()
    }
}

/// `name`, with `$` appended until `taken` does not hold it; then taken.
pub(super) fn claim(name: String, taken: &mut HashSet<String>) -> String {
    unique_name(name, '$', taken)
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// A property name: as is where it is an identifier, else quoted.
pub(super) fn property_name(json_name: &str) -> String {
    if is_identifier(json_name) {
        json_name.to_owned()
    } else {
        string_literal(json_name)
    }
}

pub(super) fn string_literal(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

/// Where each message and enum is declared, and its exported name.
pub(super) struct Symbols<'a> {
    by_full_name: HashMap<&'a str, Symbol<'a>>,
}

pub(super) struct Symbol<'a> {
    pub(super) file: &'a File,
    pub(super) name: String,
}

impl<'a> Symbols<'a> {
    pub(super) fn new(files: &'a [File]) -> Self {
        let mut by_full_name = HashMap::new();
        for file in files {
            let mut taken = HashSet::new();
            let messages = file.messages.iter().filter(|m| !m.is_map_entry);
            let declared = messages
                .map(|m| (&m.full_name, &m.path))
                .chain(file.enums.iter().map(|e| (&e.full_name, &e.path)));
            for (full_name, path) in declared {
                let name = claim(escape(&path.join("_")), &mut taken);
                by_full_name.insert(full_name.as_str(), Symbol { file, name });
            }
        }
        Self { by_full_name }
    }

    pub(super) fn get(&self, full_name: &str) -> Option<&Symbol<'a>> {
        self.by_full_name.get(full_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_properties_that_are_not_identifiers() {
        assert_eq!(property_name("fooBar"), "fooBar");
        assert_eq!(property_name("$ok_1"), "$ok_1");
        assert_eq!(property_name("foo-bar"), "\"foo-bar\"");
        assert_eq!(property_name("1st"), "\"1st\"");
        assert_eq!(escape("Promise"), "Promise$");
        assert_eq!(escape("Order"), "Order");
    }
}
