#!/usr/bin/env bash
# Writes the starting corpora under fuzz/corpus/: every frame and payload of
# docs/protocol-vectors.json, a few payloads of the rich fixture that reach
# every field shape, and a few responses in protobuf (for `responses` and
# `direct_json`). Generated, not checked
# in; libFuzzer grows them.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 - <<'PY'
import hashlib, json, pathlib, struct

vectors = json.load(open("docs/protocol-vectors.json"))
frames, payloads = [], []
for case in vectors["cases"]:
    for step in case["steps"]:
        for kind in ("send", "expect"):
            frame = step.get(kind)
            if isinstance(frame, dict):
                frames.append(json.dumps(frame, separators=(",", ":")))
                if "payload" in frame:
                    payloads.append(json.dumps(frame["payload"], separators=(",", ":")))
        if isinstance(step.get("sendText"), str):
            frames.append(step["sendText"])

# The rich fixture: oneofs, maps with string and integer keys, every scalar,
# 64-bit integers as strings, bytes, enums, the well-known types.
payloads += [
    '{"id":"o-1","state":"STATE_SHIPPED","lines":[{"sku":"sku-1","quantity":3,"price":{"currencyCode":"EUR","units":"2","nanos":500000000}}],'
    '"totalsByCurrency":{"EUR":{"currencyCode":"EUR","units":"6","nanos":500000000}},"linesByNumber":{"-7":{"sku":"s","quantity":1}},'
    '"voucher":"AAEC+g==","note":"","keywords":{"type":"t","fn":"f","self":1,"async":true,"match":"m","function":"fun","default":"d","constructor":"c"}}',
    '{"cardToken":"tok","state":1}',
    '{"gift":{"sku":"g"},"scalars":{"f_int64":42}}',
    '{"fDouble":1.5,"fFloat":-0.25,"fInt32":-32,"fInt64":"-9007199254740993","fUint32":32,"fUint64":"18446744073709551615",'
    '"fSint32":-1,"fSint64":"-9223372036854775808","fFixed32":7,"fFixed64":"1152921504606846976","fSfixed32":-7,'
    '"fSfixed64":"-1152921504606846976","fBool":true,"fString":"\\u00fcn\\"q\\"","fBytes":"/wBieXRlcw==",'
    '"rInt64":["1","-2","9223372036854775807"],"rDouble":[0.5,-1e300,"NaN","-Infinity"],"oUint64":"0","mBoolBytes":{"true":"AQ==","false":""}}',
    '{"createdAt":"2023-11-14T22:13:20.123+00:00","ttl":"90.500s","attributes":{"color":"red","n":[1,null,{"a":false}]},'
    '"anyValue":2.5,"list":[true,"x"],"maybeName":"","maybeCount":"9223372036854775807","maybeFlag":false,'
    '"maybeBytes":"CQk=","maybeRatio":0.75,"mask":"scalars.fInt64,note","nothing":{}}',
    '{"ttl":"-1.5s","createdAt":"1969-12-31T23:59:59.999999999-01:30"}',
    '{"id":"o","readMask":"lines,note"}',
    '{"ids":["a","b"],"limit":3}',
    '{"name":"n","common":{"sku":"s"},"availability":"AVAILABILITY_SOLD_OUT"}',
    '{"text":"t","count":2,"failCode":5,"failMessage":"m","delayMs":0,"echoMetadata":true,"big":"9007199254740993","markEnd":true}',
]

# Each field on its own too: small inputs mutate into new values faster.
for payload in list(payloads):
    message = json.loads(payload)
    if isinstance(message, dict) and len(message) > 1:
        payloads += [json.dumps({k: v}, separators=(",", ":")) for k, v in message.items()]

# Protobuf, for the responses: a varint, a length-delimited and a 64-bit
# field are enough to spell every message of the fixture.
def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)

def field(number, value):
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    if isinstance(value, float):
        return varint(number << 3 | 1) + struct.pack("<d", value)
    return varint(number << 3 | 2) + varint(len(value)) + value

money = field(1, b"EUR") + field(2, 6) + field(3, 500000000)
line = field(1, b"sku-1") + field(2, 3) + field(3, money)
scalars = (field(1, 1.5) + field(4, -5) + field(6, 2**64 - 1) + field(15, b"\xff\x00")
           + field(16, b"\x01\x02") + field(19, field(1, 1) + field(2, b"\x01")))
well_known = (field(1, field(1, 1700000000) + field(2, 123000000)) + field(2, field(1, -90) + field(2, -500000000))
              + field(3, field(1, field(1, b"color") + field(2, field(3, b"red"))))
              + field(4, field(2, 2.5)) + field(5, field(1, field(4, 1))) + field(7, field(1, 2**63 - 1))
              + field(11, field(1, b"scalars.f_int64")) + field(12, b""))
responses = [
    field(1, b"t") + field(2, 1) + field(3, field(1, b"k") + field(2, b"v")) + field(4, -1) + field(5, 1),
    field(1, b"o-1") + field(2, 2) + field(3, line) + field(4, field(1, b"EUR") + field(2, money))
    + field(5, field(1, -7) + field(2, line)) + field(7, b"\x00\x01") + field(9, b"")
    + field(10, scalars) + field(11, well_known) + field(12, field(1, b"t") + field(3, 1)),
    scalars,
    well_known,
    field(1, money) + field(2, b"note"),
    # The edges of a Duration's and a Timestamp's fields.
    field(1, field(1, -2**63) + field(2, -2**31)) + field(2, field(1, -2**63) + field(2, -2**31)),
    # A map entry and a Struct's key sent twice: the last wins, but
    # decoding reads both.
    field(4, field(1, b"EUR") + field(2, money)) * 2 + field(13, field(11, field(1, 1) + field(2, money)) * 2),
    field(3, field(1, field(1, b"k") + field(2, field(3, b"v"))) * 2),
]

def write(target, texts):
    folder = pathlib.Path("fuzz/corpus") / target
    folder.mkdir(parents=True, exist_ok=True)
    for text in texts:
        data = text if isinstance(text, bytes) else text.encode()
        (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)
    print(f"{folder}: {len(set(texts))} seeds")

write("envelope", frames)
write("decoders", payloads)
write("responses", responses)
write("direct_json", responses)
PY
