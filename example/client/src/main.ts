// The demo page: each section calls one method of example.ExampleService
// through the generated client, over the one WebSocket that all calls share.

import { ExampleServiceClient, type ChatMessage } from "./gen/example_wsgrpc.js";
import { RpcError, WebSocketGRPCClient, type ConnectionState } from "./gen/wsgrpc_runtime.js";
import { MessageQueue } from "./queue.js";

// The page and its socket share an origin: the bridge serves both, or a
// proxy (Envoy, nginx, the Vite dev server) in front of it does.
const socketBase = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
// A bridge started with --token wants it on every socket. Browsers cannot
// set headers on a WebSocket, so a token the page was opened with
// (`/?token=…`) travels in the socket's query string.
const token = new URLSearchParams(location.search).get("token");
const socketUrl = token === null ? socketBase : `${socketBase}?${new URLSearchParams({ token }).toString()}`;
const transport = new WebSocketGRPCClient(socketUrl);
const service = new ExampleServiceClient(transport);

function byId<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (found === null) {
    throw new Error(`the page has no #${id}`);
  }
  return found as T;
}

const ui = {
  socketUrl: byId("socket-url"),
  status: byId("status"),
  connect: byId<HTMLButtonElement>("connect-btn"),
  disconnect: byId<HTMLButtonElement>("disconnect-btn"),

  helloForm: byId<HTMLFormElement>("hello-form"),
  name: byId<HTMLInputElement>("name-input"),
  hello: byId<HTMLButtonElement>("hello-btn"),
  helloResult: byId("hello-result"),

  streamForm: byId<HTMLFormElement>("stream-form"),
  streamMessage: byId<HTMLInputElement>("stream-message-input"),
  streamCount: byId<HTMLInputElement>("stream-count-input"),
  stream: byId<HTMLButtonElement>("stream-btn"),
  streamStop: byId<HTMLButtonElement>("stream-stop-btn"),
  streamStatus: byId("stream-status"),
  streamResult: byId("stream-result"),

  collectForm: byId<HTMLFormElement>("collect-form"),
  collectInput: byId<HTMLTextAreaElement>("collect-input"),
  collect: byId<HTMLButtonElement>("collect-btn"),
  collectResult: byId("collect-result"),

  chatForm: byId<HTMLFormElement>("chat-form"),
  chatInput: byId<HTMLInputElement>("chat-input"),
  chatSend: byId<HTMLButtonElement>("chat-send-btn"),
  chatEnd: byId<HTMLButtonElement>("chat-end-btn"),
  chatStatus: byId("chat-status"),
  chatLog: byId("chat-log"),
};

// What is in progress; render() derives every button from it.
const page = {
  connectError: "",
  helloPending: false,
  stream: null as AbortController | null,
  collectPending: false,
  chat: null as MessageQueue<ChatMessage> | null,
  chatSeq: 0,
};

const STATUS_TEXT: Record<ConnectionState, string> = {
  closed: "Disconnected",
  connecting: "Connecting…",
  open: "Connected",
  reconnecting: "Reconnecting…",
};

function render(): void {
  const state = transport.state;
  const open = state === "open";
  ui.status.textContent =
    state === "closed" && page.connectError !== "" ? `Disconnected: ${page.connectError}` : STATUS_TEXT[state];
  ui.status.className = `status ${state}`;
  ui.connect.disabled = state !== "closed";
  ui.disconnect.disabled = state === "closed";
  ui.hello.disabled = !open || page.helloPending;
  ui.stream.disabled = !open || page.stream !== null;
  ui.streamStop.disabled = page.stream === null;
  ui.collect.disabled = !open || page.collectPending;
  ui.chatSend.disabled = !open || page.chat?.closed === true;
  ui.chatEnd.disabled = page.chat === null || page.chat.closed;
}

/** Shows a result line, marked as success, failure or in progress. */
function show(target: HTMLElement, text: string, tone: "ok" | "error" | "pending"): void {
  target.textContent = text;
  target.className = `result ${tone}`;
}

function describe(error: unknown): string {
  if (error instanceof RpcError) {
    return `${error.codeName}: ${error.message}`;
  }
  return error instanceof Error ? error.message : String(error);
}

function appendItem(list: HTMLElement, text: string, className = ""): void {
  const item = document.createElement("li");
  item.textContent = text;
  item.className = className;
  list.append(item);
  item.scrollIntoView({ block: "nearest" });
}

// --- Connection -----------------------------------------------------------

transport.onStateChange(render);

ui.connect.addEventListener("click", async () => {
  page.connectError = "";
  try {
    await transport.connect();
  } catch (error) {
    page.connectError = describe(error);
  }
  render();
});

ui.disconnect.addEventListener("click", () => {
  // Open calls fail with CANCELLED, and the bridge cancels them at the
  // backend.
  transport.close();
});

// --- SayHello: unary --------------------------------------------------------

ui.helloForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  page.helloPending = true;
  render();
  show(ui.helloResult, "Calling…", "pending");
  try {
    const response = await service.sayHello({ name: ui.name.value });
    show(ui.helloResult, `Response: ${response.message}`, "ok");
  } catch (error) {
    show(ui.helloResult, `Error: ${describe(error)}`, "error");
  } finally {
    page.helloPending = false;
    render();
  }
});

// --- StreamMessages: server streaming ---------------------------------------

ui.streamForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const count = Number.parseInt(ui.streamCount.value, 10) || 5;
  const stop = new AbortController();
  page.stream = stop;
  render();
  ui.streamResult.replaceChildren();
  show(ui.streamStatus, `Receiving 0 of ${count}…`, "pending");
  let received = 0;
  try {
    const responses = service.streamMessages({ message: ui.streamMessage.value, count }, { signal: stop.signal });
    for await (const response of responses) {
      received += 1;
      // proto3 JSON leaves out fields at their default: index 0 is absent.
      appendItem(ui.streamResult, `[${response.index}] ${response.message}`);
      show(ui.streamStatus, `Receiving ${received} of ${count}…`, "pending");
    }
    show(ui.streamStatus, `Done: ${received} of ${count} messages`, "ok");
  } catch (error) {
    if (stop.signal.aborted) {
      show(ui.streamStatus, `Stopped after ${received} of ${count} messages`, "ok");
    } else {
      show(ui.streamStatus, `Failed after ${received} messages: ${describe(error)}`, "error");
    }
  } finally {
    page.stream = null;
    render();
  }
});

ui.streamStop.addEventListener("click", () => {
  // Cancels the call: the bridge resets its HTTP/2 stream to the backend.
  page.stream?.abort();
});

// --- CollectMessages: client streaming --------------------------------------

ui.collectForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const lines = ui.collectInput.value
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "");
  page.collectPending = true;
  render();
  show(ui.collectResult, `Sending ${lines.length} messages…`, "pending");
  try {
    const response = await service.collectMessages(lines.map((message) => ({ message })));
    show(ui.collectResult, `${response.count} messages arrived: "${response.joined}"`, "ok");
  } catch (error) {
    show(ui.collectResult, `Error: ${describe(error)}`, "error");
  } finally {
    page.collectPending = false;
    render();
  }
});

// --- Chat: bidirectional streaming ------------------------------------------

/** Runs one chat call until the server ends it, showing its replies. */
async function runChat(input: MessageQueue<ChatMessage>): Promise<void> {
  show(ui.chatStatus, "Chat open: every message is echoed as it arrives", "pending");
  try {
    for await (const reply of service.chat(input)) {
      appendItem(ui.chatLog, `server #${reply.seq}: ${reply.text}`, "theirs");
    }
    show(ui.chatStatus, "Chat ended", "ok");
  } catch (error) {
    show(ui.chatStatus, `Chat failed: ${describe(error)}`, "error");
  } finally {
    input.close();
    if (page.chat === input) {
      page.chat = null;
    }
    render();
  }
}

ui.chatForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.chatInput.value.trim();
  if (text === "") {
    return;
  }
  if (page.chat === null) {
    page.chat = new MessageQueue<ChatMessage>();
    page.chatSeq = 0;
    ui.chatLog.replaceChildren();
    void runChat(page.chat);
  }
  page.chatSeq += 1;
  page.chat.push({ text, seq: page.chatSeq });
  appendItem(ui.chatLog, `you #${page.chatSeq}: ${text}`, "mine");
  ui.chatInput.value = "";
  render();
});

ui.chatEnd.addEventListener("click", () => {
  // Half-closes the call; the server answers what is left, then ends.
  page.chat?.close();
  show(ui.chatStatus, "Ending…", "pending");
  render();
});

// The token is a secret: the page does not show it.
ui.socketUrl.textContent = token === null ? socketBase : `${socketBase}?token=…`;
render();
