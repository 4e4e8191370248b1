// Type-level tests of the generated code: tsc compiles this file (npm run
// typecheck) and fails where an `@ts-expect-error` line does compile.
// Nothing here runs.

import { ExampleServiceClient, type HelloRequest, type StreamResponse } from "./gen/example_wsgrpc.js";
import { type Order, Order_State, type Scalars, ShopClient, type WellKnown } from "./gen/rich/shop/v1/shop_wsgrpc.js";
import { Availability, type Item as CommonItem } from "./gen/rich/common/v1/common_wsgrpc.js";
import { TestService, TestServiceClient, type TestRequest, type TestResponse } from "./gen/wsgrpc/test/v1/test_wsgrpc.js";
import {
  type BidiStream,
  Code,
  createClient,
  type CallOptions,
  type JsonValue,
  type MessageInit,
  type MethodDescriptor,
  RpcError,
  type ServerStream,
  type Transport,
  WebSocketGRPCClient,
} from "./gen/wsgrpc_runtime.js";

/** Compiles only when `A` and `B` are the same type. */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): T | undefined {
  return undefined;
}

export async function requestsAreChecked(transport: WebSocketGRPCClient): Promise<void> {
  const client = new ExampleServiceClient(transport);

  // Every field of a request is optional, all the way down.
  await client.sayHello({ name: "World" });
  await client.sayHello({});
  // @ts-expect-error a misspelt field
  await client.sayHello({ nmae: "World" });
  // @ts-expect-error a field of the wrong type
  await client.sayHello({ name: 42 });
  // @ts-expect-error optional means absent, not undefined (exactOptionalPropertyTypes)
  await client.sayHello({ name: undefined });
  // @ts-expect-error the request is required
  await client.sayHello();

  // Client streams take iterables of requests, sync or async.
  await client.collectMessages([{ message: "a" }, { message: "b" }]);
  await client.collectMessages(
    (async function* () {
      yield { message: "a" };
    })(),
  );
  // @ts-expect-error a misspelt field in a streamed request
  await client.collectMessages([{ mesage: "a" }]);
  // @ts-expect-error one request is not a stream of them
  await client.collectMessages({ message: "a" });

  const options: CallOptions = {
    timeoutMs: 1000,
    signal: new AbortController().signal,
    metadata: { authorization: "Bearer x" },
    onHeader: (headers) => void headers["x-served-by"],
    onTrailer: (trailers) => void trailers["x-trace"],
  };
  await client.sayHello({ name: "x" }, options);
  // @ts-expect-error metadata values are strings
  await client.sayHello({ name: "x" }, { metadata: { retries: 3 } });
}

export async function responsesHaveTheJsonTypes(transport: WebSocketGRPCClient): Promise<void> {
  const client = new ExampleServiceClient(transport);
  // Fields without presence are always there: the client asks the bridge
  // to write defaults.
  const hello = await client.sayHello({ name: "x" });
  assertType<Equal<typeof hello.message, string>>();

  for await (const item of client.streamMessages({ message: "x", count: 2 })) {
    assertType<Equal<typeof item, StreamResponse>>();
    assertType<Equal<typeof item.index, number>>();
  }
  for await (const reply of client.chat([{ text: "hi", seq: 1 }])) {
    assertType<Equal<typeof reply.seq, number>>();
  }

  const test = new TestServiceClient(transport);
  const response: TestResponse = await test.unary({ big: "9007199254740993" });
  assertType<Equal<typeof response.sum, string>>();
  assertType<Equal<typeof response.metadata, { [key: string]: string }>>();
  // @ts-expect-error 64-bit integers are strings in JSON, never numbers
  await test.unary({ big: 9007199254740993n });
  const stats = await test.stats({});
  assertType<Equal<typeof stats.cancelled, string>>();
  // @ts-expect-error google.protobuf.Empty has no fields
  await test.stats({ anything: 1 });
}

export function messagesFollowTheJsonMapping(order: Order, scalars: Scalars, wellKnown: WellKnown): void {
  assertType<Equal<typeof order.state, Order_State>>();
  assertType<Equal<Order_State, "STATE_UNSPECIFIED" | "STATE_OPEN" | "STATE_SHIPPED">>();
  assertType<Equal<typeof Order_State.STATE_SHIPPED, "STATE_SHIPPED">>();
  assertType<Equal<Availability, "AVAILABILITY_UNSPECIFIED" | "AVAILABILITY_IN_STOCK" | "AVAILABILITY_SOLD_OUT">>();
  void Availability.AVAILABILITY_IN_STOCK;

  // Maps: string keys, whatever the proto key type.
  assertType<Equal<typeof order.linesByNumber, { [key: string]: Order["lines"][number] }>>();
  // Fields with presence may be missing: `optional`, messages.
  assertType<Equal<typeof order.note, string | undefined>>();
  assertType<Equal<typeof order.scalars, Scalars | undefined>>();

  // A oneof is a union: one member set, the others not, or none.
  if (order.cardToken !== undefined) {
    assertType<Equal<typeof order.voucher, undefined>>();
    assertType<Equal<typeof order.gift, undefined>>();
  } else if (order.gift !== undefined) {
    assertType<Equal<typeof order.gift.sku, string>>();
    assertType<Equal<typeof order.cardToken, undefined>>();
  }
  assertType<Equal<typeof order.voucher, string | undefined>>();
  const lineOfOrder: Order["lines"][number] = { sku: "s", quantity: 1 };
  const paid: MessageInit<Order> = { id: "1", cardToken: "tok" };
  const gifted: MessageInit<Order> = { gift: lineOfOrder };
  // @ts-expect-error two members of one oneof
  const both: MessageInit<Order> = { cardToken: "tok", voucher: "djE=" };
  void [paid, gifted, both];

  assertType<Equal<typeof scalars.fInt64, string>>();
  assertType<Equal<typeof scalars.fUint64, string>>();
  assertType<Equal<typeof scalars.fSfixed64, string>>();
  assertType<Equal<typeof scalars.fDouble, number | "NaN" | "Infinity" | "-Infinity">>();
  assertType<Equal<typeof scalars.fFloat, number | "NaN" | "Infinity" | "-Infinity">>();
  assertType<Equal<typeof scalars.fBytes, string>>();
  assertType<Equal<typeof scalars.rInt64, string[]>>();
  assertType<Equal<typeof scalars.mBoolBytes, { [key: string]: string }>>();

  assertType<Equal<typeof wellKnown.createdAt, string | undefined>>();
  assertType<Equal<typeof wellKnown.ttl, string | undefined>>();
  assertType<Equal<typeof wellKnown.anyValue, JsonValue | undefined>>();
  assertType<Equal<typeof wellKnown.maybeCount, string | undefined>>();
  assertType<Equal<typeof wellKnown.maybeRatio, number | "NaN" | "Infinity" | "-Infinity" | undefined>>();
  assertType<Equal<typeof wellKnown.maybeFloat, number | "NaN" | "Infinity" | "-Infinity" | undefined>>();
  assertType<Equal<typeof wellKnown.maybeUint32, number | undefined>>();
  // Any: the embedded message's fields beside its "@type".
  const payload: NonNullable<typeof wellKnown.payload> = {
    "@type": "type.googleapis.com/rich.common.v1.Money",
    units: "3",
  };
  void payload;
  // @ts-expect-error an Any names its type
  const untyped: NonNullable<typeof wellKnown.payload> = { units: "3" };
  void untyped;
  assertType<Equal<typeof wellKnown.nothing, Record<string, never> | undefined>>();

  const request: HelloRequest = { name: "x" };
  void request;
  // @ts-expect-error a message names every field without presence
  const partial: HelloRequest = {};
  void partial;
  // @ts-expect-error enums are their value names, not numbers
  const wrongState: MessageInit<Order> = { state: 1 };
  // @ts-expect-error not a value of the enum
  const unknownState: MessageInit<Order> = { state: "STATE_LOST" };
  void wrongState;
  void unknownState;
}

export async function namesFromOtherFilesAndKeywords(transport: WebSocketGRPCClient): Promise<void> {
  const shop = new ShopClient(transport);
  const order = await shop.getOrder({ id: "1", readMask: "id,lines" });
  void order.keywords?.constructor;
  // Imported under its own name where nothing clashes.
  const item: MessageInit<CommonItem> = { sku: "s" };
  await shop.uploadItems([{ name: "n", common: item, availability: "AVAILABILITY_IN_STOCK" }]);
  // @ts-expect-error common.v1.Item is not shop.v1.Item
  await shop.uploadItems([item]);
}

export async function descriptorsAndErrors(error: unknown, transport: Transport): Promise<void> {
  assertType<Equal<typeof TestService.methods.serverStream.kind, "serverStreaming">>();
  assertType<Equal<typeof TestService.typeName, "wsgrpc.test.v1.TestService">>();
  // The descriptor carries the messages: a call through a transport takes
  // and gives exactly those.
  assertType<
    Equal<typeof TestService.methods.unary, MethodDescriptor<TestRequest, TestResponse, "unary">>
  >();
  const answer = await transport.unary(TestService.methods.unary, { text: "x" });
  assertType<Equal<typeof answer, TestResponse>>();
  // @ts-expect-error a request of another method
  await transport.unary(TestService.methods.unary, { nmae: "x" });
  // @ts-expect-error a streaming method is no unary one
  await transport.unary(TestService.methods.serverStream, {});
  // @ts-expect-error a path alone says nothing of the messages
  await transport.unary("wsgrpc.test.v1.TestService/Unary", {});

  // A client made from the descriptor alone has the generated class's shape.
  const made = createClient(TestService, transport);
  assertType<Equal<Awaited<ReturnType<typeof made.unary>>, TestResponse>>();
  assertType<Equal<ReturnType<typeof made.serverStream>, ServerStream<TestResponse>>>();
  assertType<Equal<ReturnType<typeof made.bidi>, BidiStream<MessageInit<TestRequest>, TestResponse>>>();
  const handle = made.bidi();
  handle.send({ text: "x" });
  // @ts-expect-error a request of the method's type only
  handle.send({ txet: "x" });
  // @ts-expect-error no such method
  made.nothing;
  if (error instanceof RpcError && error.code === Code.NOT_FOUND) {
    const name: string = error.codeName;
    const details: string | undefined = error.details;
    void name;
    void details;
  }
}
