"""The reference side of the differential test: Google's protobuf for
Python (json_format) reads and writes proto3 JSON for messages described by
a FileDescriptorSet.

Usage: protobuf_json.py DESCRIPTOR_SET_FILE. Then one JSON request per line
on stdin, one answer per line on stdout:

  {"op": "write", "type": T, "proto": B64, "options": {...}} -> {"json": V} | {"error": S}
  {"op": "read", "type": T, "json": TEXT}                    -> {"proto": B64} | {"error": S}
  {"op": "canonical", "type": T, "proto": B64}               -> {"proto": B64} | {"error": S}

Every "proto" answer is the deterministic serialization (map entries by
key, and so inside every Any too), so two answers are equal exactly when
the messages are.
"""

import base64
import json
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory


def main() -> None:
    with open(sys.argv[1], "rb") as f:
        files = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    classes = {}

    def new(type_name):
        if type_name not in classes:
            classes[type_name] = message_factory.GetMessageClass(
                pool.FindMessageTypeByName(type_name)
            )
        return classes[type_name]()

    def canonical(message):
        """Re-packs every Any, at any depth, deterministically: the bytes
        of an Any are a message whose map entries may come in any order."""
        descriptor = message.DESCRIPTOR
        if descriptor.full_name == "google.protobuf.Any" and message.type_url:
            inner = new(message.type_url.split("/")[-1])
            inner.ParseFromString(message.value)
            canonical(inner)
            message.value = inner.SerializeToString(deterministic=True)
            return
        for field, value in message.ListFields():
            if field.type != field.TYPE_MESSAGE:
                continue
            if field.message_type.GetOptions().map_entry:
                if field.message_type.fields_by_name["value"].type == field.TYPE_MESSAGE:
                    for item in value.values():
                        canonical(item)
            elif field.is_repeated:
                for item in value:
                    canonical(item)
            else:
                canonical(value)

    def parsed(request):
        message = new(request["type"])
        message.ParseFromString(base64.b64decode(request["proto"]))
        return message

    def answer(request):
        op = request["op"]
        if op == "write":
            options = request.get("options", {})
            value = json_format.MessageToDict(
                parsed(request),
                always_print_fields_with_no_presence=options.get("emitDefaults", False),
                use_integers_for_enums=options.get("enumNumbers", False),
                preserving_proto_field_name=options.get("protoFieldNames", False),
                descriptor_pool=pool,
            )
            return {"json": value}
        if op == "read":
            message = new(request["type"])
            json_format.Parse(request["json"], message, descriptor_pool=pool)
        elif op == "canonical":
            message = parsed(request)
        else:
            raise ValueError(f"unknown op {op}")
        canonical(message)
        proto = message.SerializeToString(deterministic=True)
        return {"proto": base64.b64encode(proto).decode()}

    for line in sys.stdin:
        try:
            reply = answer(json.loads(line))
        except Exception as error:  # every refusal is an answer
            reply = {"error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(reply, allow_nan=False) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
