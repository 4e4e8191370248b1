// How a call that failed reaches connect-es code: a ConnectError with the
// bridge's code, message, metadata and status details.

import { BinaryReader, WireType, base64Decode } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";
import { RpcError } from "@wsgrpc/runtime";

/** A status detail as connect-es keeps one it read from the wire. */
type IncomingDetail = { type: string; value: Uint8Array };

/**
 * `reason` as a ConnectError. An RpcError of the transport keeps its code
 * (connect-es numbers its codes as gRPC does), message, headers and
 * trailers, and its details where the bridge sent them; a ConnectError
 * thrown inside the call (by an input iterable, say) comes out as itself.
 */
export function toConnectError(reason: unknown): ConnectError {
  if (reason instanceof ConnectError) {
    return reason;
  }
  if (!(reason instanceof RpcError)) {
    return ConnectError.from(reason);
  }
  if (reason.cause instanceof ConnectError) {
    return reason.cause;
  }
  const error = new ConnectError(
    reason.message,
    codeOf(reason.code),
    Object.entries(reason.metadata),
    undefined,
    reason.cause ?? reason,
  );
  if (reason.details !== undefined) {
    error.details = statusDetails(reason.details);
  }
  return error;
}

function codeOf(code: number): Code {
  return code >= Code.Canceled && code <= Code.Unauthenticated ? (code as Code) : Code.Unknown;
}

/**
 * The `details` of a `google.rpc.Status` in base64 (`grpc-status-details-bin`,
 * which the bridge sends as `details`), each `google.protobuf.Any` as
 * connect-es keeps an incoming detail: the message's type name and its
 * bytes, for `ConnectError.findDetails` to decode. Nothing for details that
 * do not decode: an error is not made worse by its details.
 */
export function statusDetails(base64: string): IncomingDetail[] {
  try {
    const details: IncomingDetail[] = [];
    // google.rpc.Status: 1 code, 2 message, 3 repeated Any details.
    const status = new BinaryReader(base64Decode(base64));
    while (status.pos < status.len) {
      const [field, wireType] = status.tag();
      if (field === 3 && wireType === WireType.LengthDelimited) {
        details.push(anyDetail(status.bytes()));
      } else {
        status.skip(wireType, field);
      }
    }
    return details;
  } catch {
    return [];
  }
}

/** A google.protobuf.Any: 1 type_url, 2 value. */
function anyDetail(bytes: Uint8Array): IncomingDetail {
  const any = new BinaryReader(bytes);
  let typeUrl = "";
  let value: Uint8Array = new Uint8Array(0);
  while (any.pos < any.len) {
    const [field, wireType] = any.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) {
      typeUrl = any.string();
    } else if (field === 2 && wireType === WireType.LengthDelimited) {
      value = any.bytes();
    } else {
      any.skip(wireType, field);
    }
  }
  return { type: typeUrl.slice(typeUrl.lastIndexOf("/") + 1), value };
}
