/**
 * Live, non-document state around an open document, fed by ephemeral
 * messages: who is here and typing (Feature documents), and the agent's
 * streamed output (Transcript documents). Also sends this client's own
 * presence and typing.
 */
import type { DocHandle, DocHandleEphemeralMessagePayload } from "@automerge/automerge-repo/slim";
import type { EphemeralMessage, PresenceStatus } from "../schema";
import { decodeEphemeral, fitsEphemeralLimit, presenceMessage, typingMessage } from "../doc/ephemeral";
import { OFFLINE_AFTER_MS, PRESENCE_INTERVAL_MS, TYPING_THROTTLE_MS, applyPresence, applyTyping } from "../model/presence";
import type { PresenceRecords, TypingRecords } from "../model/presence";
import { EMPTY_STREAM, applyAgentOutput, pruneStream } from "../model/transcript";
import type { StreamState } from "../model/transcript";
import type { TranscriptView } from "../doc/transcript";

type Listener = () => void;

class Store<S> {
  #listeners = new Set<Listener>();
  constructor(protected snapshot: S) {}
  subscribe = (fn: Listener) => {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  };
  getSnapshot = (): S => this.snapshot;
  protected set(next: S) {
    if (next === this.snapshot) return;
    this.snapshot = next;
    for (const l of this.#listeners) l();
  }
}

export interface Heartbeat {
  sandboxState: string;
  at: number;
  receivedAt: number;
  restarts: number | null;
}

export interface FeatureLive {
  presence: PresenceRecords;
  typing: TypingRecords;
  /** Latest sidecar heartbeat per session. */
  heartbeats: Readonly<Record<string, Heartbeat>>;
  /** The server did not accept our changes (README §7 `refused`). */
  refused: { reason: string; message: string; at: number } | null;
}

export interface Me {
  userId: string;
  name: string;
}

/** Presence, typing, heartbeats and refusals on one Feature document. */
export class FeatureRoom extends Store<FeatureLive> {
  #handle: DocHandle<unknown>;
  #me: Me;
  #status: PresenceStatus = "active";
  #sessionId: string | null = null;
  #timer: ReturnType<typeof setInterval> | undefined;
  #leaving: ReturnType<typeof setTimeout> | undefined;
  /** The page is going away: say nothing more (a hidden page would
   * otherwise announce `away` after our `left`). */
  #pageGone = false;
  #lastTyping = new Map<string, number>();
  #watchers = 0;
  #lastReply = 0;
  #peerOf = new Map<string, string>();

  constructor(handle: DocHandle<unknown>, me: Me) {
    super({ presence: {}, typing: {}, heartbeats: {}, refused: null });
    this.#handle = handle;
    this.#me = me;
    handle.on("ephemeral-message", this.#onMessage);
    if (typeof window !== "undefined") {
      window.addEventListener("pagehide", this.#onPageHide);
      window.addEventListener("pageshow", this.#onPageShow);
    }
  }

  /** The page is closing (or going into the back/forward cache): others
   * should show us offline now, not when our presence expires. */
  #onPageHide = () => {
    if (this.#watchers > 0) this.#sendLeft();
    this.#pageGone = true;
  };

  #onPageShow = (e: PageTransitionEvent) => {
    this.#pageGone = false;
    if (e.persisted && this.#watchers > 0) this.announce();
  };

  #sendLeft() {
    this.#send(presenceMessage({ userId: this.#me.userId, name: this.#me.name, status: "left", sessionId: null }));
  }

  #onMessage = ({ message, senderId }: DocHandleEphemeralMessagePayload<unknown>) => {
    const m = decodeEphemeral(message);
    if (!m) return;
    const now = Date.now();
    const s = this.snapshot;
    switch (m.type) {
      case "presence": {
        if (m.user_id === this.#me.userId) return; // my other tabs
        const known = s.presence[m.user_id];
        const newPeer = this.#peerOf.get(m.user_id) !== senderId;
        this.#peerOf.set(m.user_id, senderId);
        this.set({ ...s, presence: applyPresence(s.presence, m, now) });
        // Someone new, back, or on a new page (a new peer id): answer at
        // once, so that they do not see us offline until our next presence.
        if (this.#watchers > 0 && (!known || newPeer || now - known.lastSeen > OFFLINE_AFTER_MS) && now - this.#lastReply > 2_000) {
          this.#lastReply = now;
          setTimeout(() => this.announce(), 200 + Math.random() * 500);
        }
        break;
      }
      case "typing":
        if (m.user_id === this.#me.userId) return;
        this.set({ ...s, typing: applyTyping(s.typing, m, now) });
        break;
      case "heartbeat":
        this.set({
          ...s,
          heartbeats: { ...s.heartbeats, [m.session_id]: { sandboxState: m.sandbox_state, at: m.at, receivedAt: now, restarts: m.restarts ?? null } },
        });
        break;
      case "refused":
        this.set({ ...s, refused: { reason: m.reason, message: m.message, at: now } });
        break;
      default:
        break;
    }
  };

  #send(message: EphemeralMessage) {
    if (fitsEphemeralLimit(message)) this.#handle.broadcast(message);
  }

  /** Send our presence now. */
  announce() {
    if (this.#pageGone) return;
    this.#send(presenceMessage({ userId: this.#me.userId, name: this.#me.name, status: this.#status, sessionId: this.#sessionId }));
  }

  /**
   * A screen that shows this feature holds the room open: presence goes out
   * now, on every change, and every PRESENCE_INTERVAL_MS until released.
   */
  watch(sessionId: string | null): () => void {
    this.#watchers++;
    this.#sessionId = sessionId;
    clearTimeout(this.#leaving);
    this.announce();
    if (!this.#timer) this.#timer = setInterval(() => this.announce(), PRESENCE_INTERVAL_MS);
    return () => {
      this.#watchers--;
      if (this.#watchers === 0) {
        clearInterval(this.#timer);
        this.#timer = undefined;
        // Moving between two screens of the feature releases and watches
        // again at once; only a real departure says `left`.
        clearTimeout(this.#leaving);
        this.#leaving = setTimeout(() => {
          if (this.#watchers === 0) this.#sendLeft();
        }, 1_000);
      }
    };
  }

  setStatus(status: PresenceStatus) {
    if (status === this.#status) return;
    this.#status = status;
    if (this.#watchers > 0) this.announce();
  }

  /** We are typing a prompt for `sessionId` (throttled). */
  typing(sessionId: string) {
    const now = Date.now();
    if (now - (this.#lastTyping.get(sessionId) ?? 0) < TYPING_THROTTLE_MS) return;
    this.#lastTyping.set(sessionId, now);
    this.#send(typingMessage(this.#me.userId, sessionId));
  }

  dismissRefused() {
    this.set({ ...this.snapshot, refused: null });
  }

  dispose() {
    clearInterval(this.#timer);
    clearTimeout(this.#leaving);
    this.#handle.off("ephemeral-message", this.#onMessage);
    if (typeof window !== "undefined") {
      window.removeEventListener("pagehide", this.#onPageHide);
      window.removeEventListener("pageshow", this.#onPageShow);
    }
  }
}

/** Streamed agent output on one Transcript document. */
export class TranscriptRoom extends Store<StreamState> {
  #handle: DocHandle<unknown>;

  constructor(handle: DocHandle<unknown>) {
    super(EMPTY_STREAM);
    this.#handle = handle;
    handle.on("ephemeral-message", this.#onMessage);
  }

  #onMessage = ({ message }: DocHandleEphemeralMessagePayload<unknown>) => {
    const m = decodeEphemeral(message);
    if (m?.type === "agent_output") this.set(applyAgentOutput(this.snapshot, m, Date.now()));
  };

  /** Drop deltas whose settled text is in the document. */
  prune(transcript: TranscriptView | null) {
    this.set(pruneStream(this.snapshot, transcript, Date.now()));
  }

  dispose() {
    this.#handle.off("ephemeral-message", this.#onMessage);
  }
}
