/**
 * A WebSocket network adapter for automerge-repo that authenticates every
 * connection with a fresh Canopy sync ticket.
 *
 * Why not the stock `WebSocketClientAdapter`: it dials one fixed URL and
 * retries it on a timer, but a Canopy ticket is good for one connection
 * (README §2 "Transport"), so each (re)connect must first
 * `POST /api/sync-ticket` and then open the URL that comes back. The peer id
 * is fixed when the Repo is built; the server lets a user keep it across
 * reconnects: we send `{ "peer_id": "u:<user id>:<suffix>" }` with every
 * ticket request and get a ticket bound to that same id.
 *
 * The wire format is the stock one: the handshake messages of
 * `@automerge/automerge-repo-network-websocket` (`join` with protocol
 * version "1", `peer` back), and one CBOR map per binary frame, encoded with
 * automerge-repo's own `cbor` helper.
 *
 * The adapter also reads the server's heads out of each `sync` message it
 * sends (for the unsynced-changes count, see unsynced.ts), and exposes the
 * connection state (connecting / online / offline / unauthorized).
 */
import * as A from "@automerge/automerge/slim";
import { NetworkAdapter, cbor } from "@automerge/automerge-repo/slim";
import type { Message, PeerId, PeerMetadata } from "@automerge/automerge-repo/slim";
import { ProtocolV1 } from "@automerge/automerge-repo-network-websocket";
import type {
  ErrorMessage,
  FromServerMessage,
  JoinMessage,
  PeerMessage,
} from "@automerge/automerge-repo-network-websocket";
import { backoffDelay } from "./backoff";

export type ConnectionStatus = "connecting" | "online" | "offline" | "unauthorized" | "stopped";

export interface ConnectionState {
  status: ConnectionStatus;
  /** Failed attempts since the last successful handshake. */
  attempt: number;
  /** When the next attempt starts (offline only). */
  retryAt: number | null;
  /** Why the last attempt failed or the connection closed. */
  lastError: string | null;
  /** The server's peer id while online. */
  serverPeerId: string | null;
  /** Since when the state has this status. */
  since: number;
}

export interface Ticket {
  peer_id: string;
  url: string;
}

/** What the adapter needs from the outside world (injectable for tests). */
export interface TicketAdapterOptions {
  /** `POST /api/sync-ticket` with `{ peer_id }`. Throw on failure. */
  fetchTicket(peerId: string): Promise<Ticket>;
  /** Whether a `fetchTicket` error means the token is no good (stop retrying). */
  isUnauthorized?(error: unknown): boolean;
  createSocket?(url: string): WebSocket;
  backoff?(attempt: number): number;
  /** The server announced its heads for a document (its durable state). */
  onServerHeads?(documentId: string, heads: string[]): void;
  /** A handshake that takes longer than this is abandoned and retried. */
  connectTimeoutMs?: number;
  now?(): number;
}

type Listener = (state: ConnectionState) => void;

/** `WebSocket.OPEN` (not a global in every runtime this runs in). */
const OPEN = 1;

export class TicketWebSocketAdapter extends NetworkAdapter {
  #options: TicketAdapterOptions;
  #socket: WebSocket | undefined;
  #remotePeerId: PeerId | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #connectTimer: ReturnType<typeof setTimeout> | undefined;
  #generation = 0;
  #stopped = true;
  #ready = false;
  #readyResolve!: () => void;
  #readyPromise = new Promise<void>((resolve) => (this.#readyResolve = resolve));
  #listeners = new Set<Listener>();
  #state: ConnectionState;

  constructor(options: TicketAdapterOptions) {
    super();
    this.#options = options;
    this.#state = {
      status: "offline",
      attempt: 0,
      retryAt: null,
      lastError: null,
      serverPeerId: null,
      since: this.#now(),
    };
  }

  #now(): number {
    return this.#options.now ? this.#options.now() : Date.now();
  }

  // ------------------------------------------------------------ state

  get state(): ConnectionState {
    return this.#state;
  }

  subscribe(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #setState(patch: Partial<ConnectionState>) {
    const status = patch.status ?? this.#state.status;
    this.#state = {
      ...this.#state,
      ...patch,
      since: status !== this.#state.status ? this.#now() : this.#state.since,
    };
    for (const l of this.#listeners) l(this.#state);
  }

  // ------------------------------------------------------------ NetworkAdapter

  isReady(): boolean {
    return this.#ready;
  }

  whenReady(): Promise<void> {
    return this.#readyPromise;
  }

  /** Ready once the first attempt has an outcome (or after a second), so
   * that `repo.find` of a document that is not stored locally does not
   * wait forever while offline. */
  #forceReady() {
    if (!this.#ready) {
      this.#ready = true;
      this.#readyResolve();
    }
  }

  connect(peerId: PeerId, peerMetadata?: PeerMetadata): void {
    this.peerId = peerId;
    this.peerMetadata = peerMetadata ?? {};
    this.#stopped = false;
    setTimeout(() => this.#forceReady(), 1000);
    if (typeof window !== "undefined") {
      window.addEventListener("online", this.#onBrowserOnline);
      window.addEventListener("offline", this.#onBrowserOffline);
    }
    void this.#dial();
  }

  send(message: Message): void {
    const socket = this.#socket;
    if (!socket || socket.readyState !== OPEN || !this.#remotePeerId) {
      // Not connected: automerge-repo resyncs every document from scratch on
      // the next `peer-candidate`, so nothing is lost by dropping this.
      return;
    }
    if ("data" in message && message.data?.byteLength === 0) throw new Error("Tried to send a zero-length message");
    const encoded = cbor.encode(message);
    socket.send(encoded.buffer.slice(encoded.byteOffset, encoded.byteOffset + encoded.byteLength) as ArrayBuffer);
  }

  disconnect(): void {
    this.#stopped = true;
    this.#generation++;
    clearTimeout(this.#timer);
    clearTimeout(this.#connectTimer);
    if (typeof window !== "undefined") {
      window.removeEventListener("online", this.#onBrowserOnline);
      window.removeEventListener("offline", this.#onBrowserOffline);
    }
    const socket = this.#socket;
    this.#socket = undefined;
    if (socket) {
      this.#detach(socket);
      socket.close(1000, "client leaving");
    }
    this.#peerGone();
    this.#setState({ status: "stopped", retryAt: null });
    this.emit("close");
  }

  // ------------------------------------------------------------ reconnecting

  /** Try again now (the user clicked "retry", or the browser came online). */
  reconnectNow(): void {
    if (this.#stopped) return;
    if (this.#state.status === "online" || this.#state.status === "connecting") return;
    clearTimeout(this.#timer);
    this.#setState({ attempt: 0 });
    void this.#dial();
  }

  /** Start again after `unauthorized` (the user signed in with a new token:
   * the caller swaps `fetchTicket`). */
  restart(options?: Partial<TicketAdapterOptions>): void {
    if (options) this.#options = { ...this.#options, ...options };
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#setState({ attempt: 0 });
    void this.#dial();
  }

  /**
   * The network is gone (the browser's `offline` event): drop the socket now
   * instead of trusting it. An open WebSocket is not closed by the browser
   * when the network goes away; it can look open for minutes (until TCP or
   * the server's idle timeout gives up), and meanwhile the UI would say
   * "online" and count nothing as unsynced. Retries follow the usual backoff
   * (they fail fast while there is no network), and the `online` event
   * retries at once.
   */
  networkLost(reason = "the browser reports no network"): void {
    if (this.#stopped) return;
    this.#generation++; // abandon a dial in flight
    clearTimeout(this.#connectTimer);
    const socket = this.#socket;
    if (socket) {
      this.#socket = undefined;
      this.#detach(socket);
      socket.close();
    }
    this.#peerGone();
    this.#forceReady();
    this.#scheduleRetry(reason);
  }

  #onBrowserOnline = () => this.reconnectNow();
  #onBrowserOffline = () => this.networkLost();

  #scheduleRetry(reason: string) {
    if (this.#stopped) return;
    const attempt = this.#state.attempt;
    const delay = (this.#options.backoff ?? backoffDelay)(attempt);
    this.#setState({ status: "offline", attempt: attempt + 1, retryAt: this.#now() + delay, lastError: reason, serverPeerId: null });
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#dial(), delay);
  }

  async #dial(): Promise<void> {
    if (this.#stopped || !this.peerId) return;
    const generation = ++this.#generation;
    const old = this.#socket;
    if (old) {
      this.#socket = undefined;
      this.#detach(old);
      old.close();
      this.#peerGone();
    }
    this.#setState({ status: "connecting", retryAt: null });

    let ticket: Ticket;
    try {
      ticket = await this.#options.fetchTicket(this.peerId);
    } catch (error) {
      if (generation !== this.#generation) return;
      this.#forceReady();
      if (this.#options.isUnauthorized?.(error)) {
        this.#setState({ status: "unauthorized", lastError: errorMessage(error), retryAt: null, serverPeerId: null });
        return;
      }
      this.#scheduleRetry(`no sync ticket: ${errorMessage(error)}`);
      return;
    }
    if (generation !== this.#generation || this.#stopped) return;
    if (ticket.peer_id !== this.peerId) {
      this.#forceReady();
      this.#scheduleRetry(`the server issued a ticket for ${ticket.peer_id}, not ${this.peerId}`);
      return;
    }

    let socket: WebSocket;
    try {
      socket = this.#options.createSocket ? this.#options.createSocket(ticket.url) : new WebSocket(ticket.url);
    } catch (error) {
      this.#forceReady();
      this.#scheduleRetry(`cannot open ${ticket.url}: ${errorMessage(error)}`);
      return;
    }
    socket.binaryType = "arraybuffer";
    this.#socket = socket;
    socket.addEventListener("open", this.#onOpen);
    socket.addEventListener("message", this.#onMessage);
    socket.addEventListener("close", this.#onClose);
    socket.addEventListener("error", this.#onError);
    clearTimeout(this.#connectTimer);
    this.#connectTimer = setTimeout(() => {
      if (this.#socket === socket && !this.#remotePeerId) {
        this.#socket = undefined;
        this.#detach(socket);
        socket.close();
        this.#forceReady();
        this.#scheduleRetry("the server did not answer the handshake in time");
      }
    }, this.#options.connectTimeoutMs ?? 15_000);
  }

  #detach(socket: WebSocket) {
    socket.removeEventListener("open", this.#onOpen);
    socket.removeEventListener("message", this.#onMessage);
    socket.removeEventListener("close", this.#onClose);
    socket.removeEventListener("error", this.#onError);
  }

  #peerGone() {
    const remote = this.#remotePeerId;
    this.#remotePeerId = undefined;
    if (remote) this.emit("peer-disconnected", { peerId: remote });
  }

  #onOpen = (event: Event) => {
    const socket = this.#socket;
    if (!socket || event.target !== socket || !this.peerId) return;
    const join: JoinMessage = {
      type: "join",
      senderId: this.peerId,
      peerMetadata: this.peerMetadata ?? {},
      supportedProtocolVersions: [ProtocolV1],
    };
    const encoded = cbor.encode(join);
    socket.send(encoded.buffer.slice(encoded.byteOffset, encoded.byteOffset + encoded.byteLength) as ArrayBuffer);
  };

  #onError = () => {
    // Browsers say nothing about why; the close event follows.
  };

  #onClose = (event: CloseEvent) => {
    const socket = this.#socket;
    if (!socket || event.target !== socket) return;
    this.#socket = undefined;
    this.#detach(socket);
    clearTimeout(this.#connectTimer);
    this.#peerGone();
    this.#forceReady();
    const why = event.reason ? `${event.code} ${event.reason}` : `code ${event.code}`;
    this.#scheduleRetry(`connection closed (${why})`);
  };

  #onMessage = (event: MessageEvent) => {
    if (event.target !== this.#socket) return;
    const data = event.data;
    if (!(data instanceof ArrayBuffer)) return; // text frames are not part of the protocol
    let message: FromServerMessage;
    try {
      message = cbor.decode(new Uint8Array(data));
    } catch {
      return;
    }
    if (message.type === "peer") {
      const peer = message as PeerMessage;
      clearTimeout(this.#connectTimer);
      this.#remotePeerId = peer.senderId;
      this.#setState({ status: "online", attempt: 0, retryAt: null, lastError: null, serverPeerId: peer.senderId });
      this.#forceReady();
      this.emit("peer-candidate", { peerId: peer.senderId, peerMetadata: peer.peerMetadata ?? {} });
      return;
    }
    if (message.type === "error") {
      this.#setState({ lastError: `server: ${(message as ErrorMessage).message}` });
      return;
    }
    const sync = message as { type: string; senderId: PeerId; documentId?: string; data?: Uint8Array };
    if (
      (sync.type === "sync" || sync.type === "request") &&
      sync.senderId === this.#remotePeerId &&
      sync.documentId &&
      sync.data &&
      this.#options.onServerHeads
    ) {
      try {
        const heads = A.decodeSyncMessage(sync.data).heads;
        this.#options.onServerHeads(sync.documentId, heads);
      } catch {
        // not a sync message we can read; the Repo will say so
      }
    }
    this.emit("message", message as Message);
  };
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
