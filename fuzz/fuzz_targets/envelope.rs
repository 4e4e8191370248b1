//! Any text a client sends as a frame parses into an envelope or is refused;
//! an envelope that parsed serializes and parses back to the same frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgrpc_runtime::envelope::Envelope;

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are UTF-8 by the time the bridge sees them.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(frame) = Envelope::parse(text) else {
        return;
    };
    let json = frame.to_json();
    let again = Envelope::parse(&json)
        .unwrap_or_else(|err| panic!("serialized frame does not parse: {err}\n{json}"));
    assert_eq!(again.to_json(), json, "frame changed on a second round");
});
