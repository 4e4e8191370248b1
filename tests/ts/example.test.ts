// The generated ExampleService client against the real bridge and backend:
// all four kinds of method.

import { describe, expect, it } from "vitest";

import { type ChatMessage, ExampleService, ExampleServiceClient } from "./gen/example_wsgrpc.js";
import { sharedServer } from "./support/harness.js";
import { collectResponse, streamResponse } from "./support/responses.js";

let client: ExampleServiceClient;
sharedServer((transport) => {
  client = new ExampleServiceClient(transport);
});

describe("ExampleService", () => {
  it("unary: SayHello", async () => {
    await expect(client.sayHello({ name: "World" })).resolves.toEqual({ message: "Hello World" });
  });

  it("server streaming: StreamMessages, in order, until the envelope's end", async () => {
    const received = [];
    for await (const response of client.streamMessages({ message: "hi", count: 3 })) {
      received.push(response);
    }
    // index 0 is the default, which JSON leaves out.
    expect(received).toEqual([0, 1, 2].map((index) => streamResponse({ message: "hi", index })));
  });

  it("client streaming: CollectMessages from an async generator", async () => {
    async function* words() {
      yield { message: "a" };
      await new Promise((resolve) => setTimeout(resolve, 10));
      yield { message: "b" };
      yield { message: "c" };
    }
    await expect(client.collectMessages(words())).resolves.toEqual({ count: 3, joined: "a b c" });
  });

  it("client streaming: CollectMessages from an array, and from nothing", async () => {
    await expect(client.collectMessages([{ message: "x" }, { message: "y" }])).resolves.toEqual({
      count: 2,
      joined: "x y",
    });
    await expect(client.collectMessages([])).resolves.toEqual(collectResponse());
  });

  it("bidi streaming: Chat answers each message as it arrives", async () => {
    // The next message goes out only after the answer to the previous one
    // came back: proof that the streams are really interleaved.
    let answered: () => void = () => {};
    async function* conversation(): AsyncGenerator<ChatMessage> {
      for (let seq = 1; seq <= 3; seq++) {
        const answer = new Promise<void>((resolve) => (answered = resolve));
        yield { text: `m${seq}`, seq };
        await answer;
      }
    }
    const replies = [];
    for await (const reply of client.chat(conversation())) {
      replies.push(reply);
      answered();
    }
    expect(replies).toEqual([
      { text: "echo: m1", seq: 1 },
      { text: "echo: m2", seq: 2 },
      { text: "echo: m3", seq: 3 },
    ]);
  });

  it("calls run side by side on one connection", async () => {
    const names = ["a", "b", "c", "d"];
    const answers = await Promise.all(names.map((name) => client.sayHello({ name })));
    expect(answers.map((answer) => answer.message)).toEqual(["Hello a", "Hello b", "Hello c", "Hello d"]);
  });

  it("exports a descriptor of the service", () => {
    expect(ExampleService.typeName).toBe("example.ExampleService");
    expect(ExampleService.methods.chat).toEqual({
      name: "Chat",
      path: "example.ExampleService/Chat",
      kind: "bidiStreaming",
    });
  });
});

describe("more calls than the bridge lets open at once", () => {
  // The test bridge allows 4 calls per connection; in v2 the client knows
  // it from the bridge's settings and lines the rest up.
  it("1,000 unary calls started together all succeed, in turn", async () => {
    const names = Array.from({ length: 1_000 }, (_, n) => `n${n}`);
    const answers = await Promise.all(names.map((name) => client.sayHello({ name })));
    expect(answers).toEqual(names.map((name) => ({ message: `Hello ${name}` })));
  });

  it("a call waiting in line can be aborted, and its deadline runs while it waits", async () => {
    // Four streams that take a while hold every place.
    const holders = Array.from({ length: 4 }, async () => {
      const received = [];
      for await (const item of client.streamMessages({ message: "hold", count: 2_000 })) {
        received.push(item);
      }
      return received.length;
    });
    const abort = new AbortController();
    const aborted = client.sayHello({ name: "aborted" }, { signal: abort.signal });
    const late = client.sayHello({ name: "late" }, { timeoutMs: 1 });
    const patient = client.sayHello({ name: "patient" });
    abort.abort();
    await expect(aborted).rejects.toMatchObject({ codeName: "CANCELLED" });
    await expect(late).rejects.toMatchObject({ codeName: "DEADLINE_EXCEEDED" });
    await expect(patient).resolves.toEqual({ message: "Hello patient" });
    expect(await Promise.all(holders)).toEqual([2_000, 2_000, 2_000, 2_000]);
  });
});

describe("a reader slower than its stream", () => {
  it("gets every message of a long backlog, in order", async () => {
    const count = 100_000;
    let next = 0;
    for await (const item of client.streamMessages({ message: "b", count })) {
      if (next === 0) {
        // Let the rest pile up in the transport before reading on.
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
      expect(item.index ?? 0).toBe(next);
      next += 1;
    }
    expect(next).toBe(count);
  });
});
