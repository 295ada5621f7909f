import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import * as A from "@automerge/automerge/slim";
import { cbor } from "@automerge/automerge-repo/slim";
import type { PeerId } from "@automerge/automerge-repo/slim";
import { TicketWebSocketAdapter } from "./ticketAdapter";
import type { Ticket, TicketAdapterOptions } from "./ticketAdapter";

/** Enough of a browser WebSocket for the adapter. */
class FakeSocket {
  static all: FakeSocket[] = [];
  readyState = 0;
  binaryType = "blob";
  sent: unknown[] = [];
  closed = false;
  #listeners = new Map<string, Set<(e: unknown) => void>>();
  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }
  addEventListener(type: string, fn: (e: unknown) => void) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type)!.add(fn);
  }
  removeEventListener(type: string, fn: (e: unknown) => void) {
    this.#listeners.get(type)?.delete(fn);
  }
  #fire(type: string, extra: Record<string, unknown> = {}) {
    for (const fn of [...(this.#listeners.get(type) ?? [])]) fn({ target: this, ...extra });
  }
  send(data: ArrayBuffer) {
    this.sent.push(cbor.decode(new Uint8Array(data)));
  }
  close() {
    this.closed = true;
    this.readyState = 3;
  }
  // --- driven by the test, as the server would
  open() {
    this.readyState = 1;
    this.#fire("open");
  }
  receive(message: unknown) {
    const bytes = cbor.encode(message);
    this.#fire("message", { data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
  }
  drop(code = 1006, reason = "") {
    this.readyState = 3;
    this.#fire("close", { code, reason });
  }
}

const PEER = "u:usr_a:web-abc" as PeerId;
const SERVER = "canopy-server-1" as PeerId;

function setup(overrides: Partial<TicketAdapterOptions> = {}) {
  let n = 0;
  const fetchTicket = vi.fn(async (peerId: string): Promise<Ticket> => ({ peer_id: peerId, url: `ws://server/sync?ticket=t${++n}` }));
  const onServerHeads = vi.fn();
  const adapter = new TicketWebSocketAdapter({
    fetchTicket,
    onServerHeads,
    isUnauthorized: (e) => (e as { status?: number }).status === 401,
    createSocket: (url) => new FakeSocket(url) as unknown as WebSocket,
    backoff: (attempt) => 500 * 2 ** attempt,
    now: () => Date.now(),
    ...overrides,
  });
  const events: string[] = [];
  adapter.on("peer-candidate", ({ peerId }) => events.push(`candidate ${peerId}`));
  adapter.on("peer-disconnected", ({ peerId }) => events.push(`disconnected ${peerId}`));
  adapter.on("message", (m) => events.push(`message ${m.type}`));
  return { adapter, fetchTicket, onServerHeads, events };
}

const lastSocket = () => FakeSocket.all[FakeSocket.all.length - 1]!;

beforeEach(() => {
  vi.useFakeTimers();
  FakeSocket.all = [];
});
afterEach(() => {
  vi.useRealTimers();
});

describe("TicketWebSocketAdapter", () => {
  it("fetches a ticket for its peer id, dials the ticket's URL and joins with that peer id", async () => {
    const { adapter, fetchTicket, events } = setup();
    adapter.connect(PEER, { storageId: "store-1" as never, isEphemeral: false });
    expect(adapter.state.status).toBe("connecting");
    await vi.advanceTimersByTimeAsync(0);
    expect(fetchTicket).toHaveBeenCalledWith(PEER);
    const socket = lastSocket();
    expect(socket.url).toBe("ws://server/sync?ticket=t1");
    expect(socket.binaryType).toBe("arraybuffer");
    socket.open();
    expect(socket.sent).toEqual([
      { type: "join", senderId: PEER, peerMetadata: { storageId: "store-1", isEphemeral: false }, supportedProtocolVersions: ["1"] },
    ]);
    socket.receive({ type: "peer", senderId: SERVER, targetId: PEER, selectedProtocolVersion: "1", peerMetadata: { isEphemeral: false } });
    expect(adapter.state).toMatchObject({ status: "online", serverPeerId: SERVER, attempt: 0 });
    expect(adapter.isReady()).toBe(true);
    expect(events).toEqual([`candidate ${SERVER}`]);
  });

  it("reconnects with a fresh ticket and the same peer id after the connection drops, backing off", async () => {
    const { adapter, fetchTicket, events } = setup();
    adapter.connect(PEER);
    await vi.advanceTimersByTimeAsync(0);
    lastSocket().open();
    lastSocket().receive({ type: "peer", senderId: SERVER, targetId: PEER, selectedProtocolVersion: "1", peerMetadata: {} });

    lastSocket().drop(1001, "server shutting down");
    expect(adapter.state).toMatchObject({ status: "offline", attempt: 1, lastError: "connection closed (1001 server shutting down)" });
    expect(events).toEqual([`candidate ${SERVER}`, `disconnected ${SERVER}`]);
    await vi.advanceTimersByTimeAsync(499);
    expect(fetchTicket).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(fetchTicket).toHaveBeenCalledTimes(2);
    expect(fetchTicket).toHaveBeenLastCalledWith(PEER);
    expect(lastSocket().url).toBe("ws://server/sync?ticket=t2");

    // This one fails before the handshake: the next wait doubles.
    lastSocket().drop(1006);
    expect(adapter.state.retryAt! - Date.now()).toBe(1000);
    await vi.advanceTimersByTimeAsync(1000);
    expect(fetchTicket).toHaveBeenCalledTimes(3);
    lastSocket().open();
    lastSocket().receive({ type: "peer", senderId: SERVER, targetId: PEER, selectedProtocolVersion: "1", peerMetadata: {} });
    expect(adapter.state).toMatchObject({ status: "online", attempt: 0 });
    expect(FakeSocket.all.map((s) => s.url)).toEqual(["ws://server/sync?ticket=t1", "ws://server/sync?ticket=t2", "ws://server/sync?ticket=t3"]);
  });

  it("backs off while tickets cannot be had, and stops when the token is refused", async () => {
    const failures = [new Error("cannot reach the server"), new Error("cannot reach the server"), Object.assign(new Error("bad token"), { status: 401 })];
    const fetchTicket = vi.fn(async (): Promise<Ticket> => {
      throw failures.shift();
    });
    const { adapter } = setup({ fetchTicket });
    adapter.connect(PEER);
    await vi.advanceTimersByTimeAsync(0);
    expect(adapter.state).toMatchObject({ status: "offline", attempt: 1 });
    expect(adapter.isReady()).toBe(true); // find() must not wait on an offline start
    await vi.advanceTimersByTimeAsync(500);
    expect(adapter.state).toMatchObject({ status: "offline", attempt: 2 });
    await vi.advanceTimersByTimeAsync(1000);
    expect(adapter.state).toMatchObject({ status: "unauthorized", lastError: "bad token" });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(fetchTicket).toHaveBeenCalledTimes(3);
    expect(FakeSocket.all).toHaveLength(0);
  });

  it("drops an open socket when the browser reports the network gone, and dials again on reconnectNow", async () => {
    const { adapter, fetchTicket, events } = setup();
    adapter.connect(PEER);
    await vi.advanceTimersByTimeAsync(0);
    const socket = lastSocket();
    socket.open();
    socket.receive({ type: "peer", senderId: SERVER, targetId: PEER, selectedProtocolVersion: "1", peerMetadata: {} });
    expect(adapter.state.status).toBe("online");

    adapter.networkLost();
    expect(socket.closed).toBe(true);
    expect(adapter.state).toMatchObject({ status: "offline", attempt: 1, serverPeerId: null, lastError: "the browser reports no network" });
    expect(events).toEqual([`candidate ${SERVER}`, `disconnected ${SERVER}`]);
    // The old socket's late close event changes nothing.
    socket.drop(1006);
    expect(adapter.state.attempt).toBe(1);

    // The browser's `online` event: dial at once with a new ticket.
    adapter.reconnectNow();
    await vi.advanceTimersByTimeAsync(0);
    expect(fetchTicket).toHaveBeenCalledTimes(2);
    lastSocket().open();
    lastSocket().receive({ type: "peer", senderId: SERVER, targetId: PEER, selectedProtocolVersion: "1", peerMetadata: {} });
    expect(adapter.state).toMatchObject({ status: "online", attempt: 0 });
  });

  it("abandons a dial in flight when the network goes", async () => {
    let release!: (t: Ticket) => void;
    const fetchTicket = vi.fn(() => new Promise<Ticket>((r) => (release = r)));
    const { adapter } = setup({ fetchTicket });
    adapter.connect(PEER);
    await vi.advanceTimersByTimeAsync(0);
    adapter.networkLost();
    release({ peer_id: PEER, url: "ws://late" });
    await vi.advanceTimersByTimeAsync(0);
    expect(FakeSocket.all).toHaveLength(0);
    expect(adapter.state.status).toBe("offline");
  });

  it("refuses a ticket for another peer id", async () => {
    const { adapter } = setup({ fetchTicket: async () => ({ peer_id: "u:usr_a:other", url: "ws://x" }) });
    adapter.connect(PEER);
    await vi.advanceTimersByTimeAsync(0);
    expect(FakeSocket.all).toHaveLength(0);
    expect(adapter.state.status).toBe("offline");
    expect(adapter.state.lastError).toMatch(/u:usr_a:other/);
  });

  it("reads the server's heads from its sync messages and passes every message on", async () => {
    const { adapter, onServerHeads, events } = setup();
    adapter.connect(PEER);
    await vi.advanceTimersByTimeAsync(0);
    lastSocket().open();
    lastSocket().receive({ type: "peer", senderId: SERVER, targetId: PEER, selectedProtocolVersion: "1", peerMetadata: {} });
    const doc = A.from({ notes: "x" });
    const [, data] = A.generateSyncMessage(doc, A.initSyncState());
    lastSocket().receive({ type: "sync", senderId: SERVER, targetId: PEER, documentId: "doc1", data });
    expect(onServerHeads).toHaveBeenCalledWith("doc1", A.getHeads(doc));
    expect(events).toContain("message sync");
  });

  it("sends only while connected, and stops for good on disconnect", async () => {
    const { adapter, fetchTicket, events } = setup();
    adapter.connect(PEER);
    await vi.advanceTimersByTimeAsync(0);
    const socket = lastSocket();
    const msg = { type: "ephemeral", senderId: PEER, targetId: SERVER, documentId: "d", sessionId: "s", count: 1, data: new Uint8Array([1]) } as never;
    adapter.send(msg); // before the handshake: dropped
    socket.open();
    socket.receive({ type: "peer", senderId: SERVER, targetId: PEER, selectedProtocolVersion: "1", peerMetadata: {} });
    adapter.send(msg);
    expect(socket.sent.map((m) => (m as { type: string }).type)).toEqual(["join", "ephemeral"]);
    adapter.disconnect();
    expect(socket.closed).toBe(true);
    expect(adapter.state.status).toBe("stopped");
    expect(events).toContain(`disconnected ${SERVER}`);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(fetchTicket).toHaveBeenCalledTimes(1);
  });
});
