//! A differential test of the JSON writer: any bytes a backend sends as a
//! message of any type the fixtures hold, under every option. Where the
//! direct writer (straight from the wire) writes them, the general path
//! (prost-reflect) must write the same JSON; where it declines, the
//! general path writes or refuses alone. `json::testing` says what "the
//! same" allows.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use wsgrpc_runtime::JsonWriter;
use wsgrpc_runtime::json::testing::{compare, every_options};

static WRITERS: LazyLock<Vec<JsonWriter>> = LazyLock::new(|| {
    wsgrpc_fuzz::every_message()
        .iter()
        .map(JsonWriter::new)
        .collect()
});

fuzz_target!(|data: &[u8]| {
    for writer in WRITERS.iter() {
        for options in every_options() {
            if let Err(difference) = compare(writer, data, &options) {
                let name = writer.descriptor().full_name();
                panic!("{name} {options:?}, {data:02x?}: {difference}");
            }
        }
    }
});
