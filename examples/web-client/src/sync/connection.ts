/**
 * The client's one connection to Canopy: an automerge-repo `Repo` with
 * IndexedDB storage and the ticket WebSocket adapter, plus the
 * unsynced-changes tracker.
 *
 * Peer id: `u:<user id>:web-<random>`, chosen once per page load (one Repo =
 * one replica identity), kept across reconnects by asking every ticket for
 * it. Two tabs get two peer ids but share the IndexedDB database (its
 * `storageId` is in the `join` metadata).
 */
import { Repo } from "@automerge/automerge-repo/slim";
import type { AnyDocumentId, DocHandle, PeerId } from "@automerge/automerge-repo/slim";
import { IndexedDBStorageAdapter } from "@automerge/automerge-repo-storage-indexeddb";
import { Api, ApiError } from "../api/client";
import type { Me } from "../api/client";
import { databaseName, local } from "./local";
import { TicketWebSocketAdapter } from "./ticketAdapter";
import type { ConnectionState } from "./ticketAdapter";
import { unsyncedCount } from "./unsynced";
import { FeatureRoom, TranscriptRoom } from "./rooms";

/** `u:<user id>:web-<12 random characters>` (the server's peer id rules). */
export function makePeerId(userId: string, random: () => number = Math.random): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  let suffix = "";
  for (let i = 0; i < 12; i++) suffix += alphabet[Math.floor(random() * alphabet.length)];
  return `u:${userId}:web-${suffix}`;
}

type Listener = () => void;

/**
 * Counts, per document, the local changes the server has not announced
 * (see unsynced.ts). Server heads are remembered in localStorage, so the
 * count survives a reload while offline.
 */
export class UnsyncedTracker {
  #repo: Repo;
  #userId: string;
  #serverHeads: Record<string, string[]>;
  #counts = new Map<string, number>();
  #listeners = new Set<Listener>();
  #attached = new Set<string>();
  #saveTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(repo: Repo, userId: string) {
    this.#repo = repo;
    this.#userId = userId;
    this.#serverHeads = local.serverHeads(userId);
  }

  subscribe(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Total unsynced changes over every open document. */
  get total(): number {
    let n = 0;
    for (const c of this.#counts.values()) n += c;
    return n;
  }

  countFor(documentId: string): number {
    return this.#counts.get(documentId) ?? 0;
  }

  attach(handle: DocHandle<unknown>) {
    if (this.#attached.has(handle.documentId)) return;
    this.#attached.add(handle.documentId);
    handle.on("heads-changed", () => this.#recompute(handle.documentId));
    this.#recompute(handle.documentId);
  }

  onServerHeads = (documentId: string, heads: string[]) => {
    this.#serverHeads[documentId] = heads;
    this.#recompute(documentId);
    clearTimeout(this.#saveTimer);
    this.#saveTimer = setTimeout(() => local.saveServerHeads(this.#userId, this.#serverHeads), 500);
  };

  #recompute(documentId: string) {
    const handle = (this.#repo.handles as Record<string, DocHandle<unknown> | undefined>)[documentId];
    if (!handle || !handle.isReady()) return;
    const n = unsyncedCount(handle.doc(), this.#serverHeads[documentId]);
    if (n === null) return; // unknown for now: keep the last answer
    if (this.#counts.get(documentId) === n) return;
    this.#counts.set(documentId, n);
    for (const l of this.#listeners) l();
  }
}

export class Connection {
  readonly api: Api;
  readonly me: Me;
  readonly peerId: string;
  readonly repo: Repo;
  readonly adapter: TicketWebSocketAdapter;
  readonly unsynced: UnsyncedTracker;

  constructor(token: string, me: Me) {
    this.api = new Api(token);
    this.me = me;
    this.peerId = makePeerId(me.user_id);
    let tracker: UnsyncedTracker | null = null;
    this.adapter = new TicketWebSocketAdapter({
      fetchTicket: (peerId) => this.api.syncTicket(peerId),
      isUnauthorized: (e) => e instanceof ApiError && (e.status === 401 || e.status === 403),
      onServerHeads: (doc, heads) => tracker?.onServerHeads(doc, heads),
    });
    this.repo = new Repo({
      peerId: this.peerId as PeerId,
      storage: new IndexedDBStorageAdapter(databaseName(me.user_id), "documents"),
      network: [this.adapter],
      // The server decides what to share (README §3 "Documents").
      sharePolicy: async () => true,
    });
    tracker = this.unsynced = new UnsyncedTracker(this.repo, me.user_id);
    this.adapter.subscribe((st) => {
      if (st.status === "online") void this.#drainPrefetch();
    });
  }

  get state(): ConnectionState {
    return this.adapter.state;
  }

  #featureRooms = new Map<string, FeatureRoom>();
  #transcriptRooms = new Map<string, TranscriptRoom>();
  #docUrls = new Map<string, string>();

  /** The live presence/typing room of a Feature document (one per document). */
  featureRoom(handle: DocHandle<unknown>): FeatureRoom {
    let room = this.#featureRooms.get(handle.documentId);
    if (!room) {
      room = new FeatureRoom(handle, { userId: this.me.user_id, name: this.me.display_name || this.me.handle });
      this.#featureRooms.set(handle.documentId, room);
      // Say hello again after every reconnect: others may have expired us.
      const r = room;
      let wasOnline = this.state.status === "online";
      this.adapter.subscribe((st) => {
        const online = st.status === "online";
        if (online && !wasOnline) setTimeout(() => r.announce(), 300);
        wasOnline = online;
      });
    }
    return room;
  }

  transcriptRoom(handle: DocHandle<unknown>): TranscriptRoom {
    let room = this.#transcriptRooms.get(handle.documentId);
    if (!room) {
      room = new TranscriptRoom(handle);
      this.#transcriptRooms.set(handle.documentId, room);
    }
    return room;
  }

  /** The document URL of a feature: from what this device remembers
   * (features opened here, the cached feature list), else from the server
   * (`GET /api/features/{id}`), and then remembered in localStorage, so a
   * feature opened once (from a link, say) also opens offline after a reload. */
  async featureUrl(featureId: string): Promise<string> {
    const known =
      this.#docUrls.get(featureId) ??
      local.docUrls(this.me.user_id)[featureId] ??
      local.features(this.me.user_id)?.find((f) => f.feature_id === featureId)?.doc_url;
    if (known) return known;
    const snapshot = await this.api.getFeature(featureId);
    this.rememberFeatureUrl(featureId, snapshot.doc_url);
    return snapshot.doc_url;
  }

  /** `persist: false` for URLs that are saved elsewhere (the feature list). */
  rememberFeatureUrl(featureId: string, docUrl: string, { persist = true }: { persist?: boolean } = {}) {
    if (this.#docUrls.get(featureId) === docUrl) return;
    this.#docUrls.set(featureId, docUrl);
    if (!persist) return;
    const saved = local.docUrls(this.me.user_id);
    if (saved[featureId] !== docUrl) local.saveDocUrls(this.me.user_id, { ...saved, [featureId]: docUrl });
  }

  /** Find a document (IndexedDB first, then the server) and track its
   * unsynced changes. Rejects when neither has it. */
  async find<T>(url: AnyDocumentId, signal?: AbortSignal): Promise<DocHandle<T>> {
    const id = String(url).replace(/^automerge:/, "").split("#")[0]!;
    const cached = (this.repo.handles as Record<string, DocHandle<T> | undefined>)[id];
    if (cached && cached.state === "unavailable") {
      // automerge-repo caches "unavailable" (e.g. looked up while offline and
      // not stored here). When a peer (re)connects it asks again, and the
      // handle turns ready if the server has the document: wait for that.
      await Promise.race([
        cached.whenReady(["ready"], signal ? { signal } : undefined),
        new Promise((_, reject) => setTimeout(() => reject(new Error(`Document ${String(url)} is unavailable`)), 10_000)),
      ]);
      this.unsynced.attach(cached as DocHandle<unknown>);
      return cached;
    }
    const handle = await this.repo.find<T>(url, signal ? { signal } : {});
    this.unsynced.attach(handle as DocHandle<unknown>);
    return handle;
  }

  #prefetched = new Set<string>();
  #prefetchQueue: string[] = [];
  #prefetching = false;

  /** Bring these documents onto this device (kept in IndexedDB and synced
   * from then on), one at a time while online, so that what was never
   * opened here (a session's transcript, say) can still be read offline. */
  prefetch(urls: readonly string[]) {
    for (const u of urls) {
      if (this.#prefetched.has(u)) continue;
      this.#prefetched.add(u);
      this.#prefetchQueue.push(u);
    }
    void this.#drainPrefetch();
  }

  async #drainPrefetch() {
    if (this.#prefetching) return;
    this.#prefetching = true;
    try {
      while (this.#prefetchQueue.length > 0 && this.state.status === "online") {
        const url = this.#prefetchQueue.shift()!;
        try {
          await this.find(url as AnyDocumentId);
        } catch {
          this.#prefetched.delete(url); // asked again the next time it is listed
        }
      }
    } finally {
      this.#prefetching = false;
    }
  }

  async close(): Promise<void> {
    for (const r of this.#featureRooms.values()) r.dispose();
    for (const r of this.#transcriptRooms.values()) r.dispose();
    this.adapter.disconnect();
    await this.repo.shutdown();
  }
}
