/**
 * React glue: the connection in context, documents as state, ephemeral
 * rooms as state.
 */
import { createContext, useContext, useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";
import type { AnyDocumentId, DocHandle } from "@automerge/automerge-repo/slim";
import type { Doc } from "@automerge/automerge/slim";
import type { Connection } from "../sync/connection";
import type { ConnectionState } from "../sync/ticketAdapter";
import type { FeatureDoc, TranscriptDoc } from "../schema";
import { readFeature } from "../doc/feature";
import type { FeatureView } from "../doc/feature";
import { readTranscript } from "../doc/transcript";
import type { TranscriptView } from "../doc/transcript";
import type { FeatureLive, FeatureRoom, TranscriptRoom } from "../sync/rooms";
import type { StreamState } from "../model/transcript";
import { myPresenceStatus } from "../model/presence";
import { recentTranscripts } from "../model/feature";

/** How many sessions' transcripts a device keeps without being opened. */
const PREFETCH_TRANSCRIPTS = 20;

export const ConnectionContext = createContext<Connection | null>(null);

export function useConnection(): Connection {
  const c = useContext(ConnectionContext);
  if (!c) throw new Error("no connection");
  return c;
}

export function useConnectionState(): ConnectionState {
  const c = useConnection();
  return useSyncExternalStore(c.adapter.subscribe.bind(c.adapter), () => c.adapter.state);
}

export function useUnsyncedTotal(): number {
  const c = useConnection();
  return useSyncExternalStore(c.unsynced.subscribe.bind(c.unsynced), () => c.unsynced.total);
}

/** Re-render every `ms` (for relative times and presence expiry). */
export function useNow(ms = 5_000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

export interface HandleState<T> {
  handle: DocHandle<T> | null;
  error: string | null;
  loading: boolean;
}

/**
 * Find a document: from IndexedDB first (works offline), else from the
 * server. A document that could not be found is looked up again when the
 * connection comes back.
 */
export function useHandle<T>(url: string | null): HandleState<T> {
  const conn = useConnection();
  const online = useConnectionState().status === "online";
  const [state, setState] = useState<HandleState<T>>({ handle: null, error: null, loading: !!url });
  const [retry, setRetry] = useState(0);
  const failed = useRef(false);

  useEffect(() => {
    if (!url) {
      setState({ handle: null, error: null, loading: false });
      return;
    }
    let cancelled = false;
    const controller = new AbortController();
    setState((s) => (s.handle && s.handle.url === url ? s : { handle: null, error: null, loading: true }));
    (async () => {
      try {
        const handle = await conn.find<T>(url as AnyDocumentId, controller.signal);
        if (cancelled) return;
        failed.current = false;
        setState({ handle, error: null, loading: false });
      } catch (e) {
        if (cancelled) return;
        failed.current = true;
        setState({ handle: null, error: e instanceof Error ? e.message : String(e), loading: false });
      }
    })();
    return () => {
      cancelled = true;
      controller.abort();
    };
  }, [conn, url, retry]);

  // Came back online after a failed lookup: try again.
  useEffect(() => {
    if (online && failed.current) setRetry((r) => r + 1);
  }, [online]);

  return state;
}

/** The current document of a handle, re-rendering on every change. */
export function useDoc<T>(handle: DocHandle<T> | null): Doc<T> | undefined {
  const subscribe = useMemo(
    () => (fn: () => void) => {
      if (!handle) return () => {};
      handle.on("change", fn);
      return () => handle.off("change", fn);
    },
    [handle],
  );
  return useSyncExternalStore(subscribe, () => (handle && handle.isReady() ? handle.doc() : undefined));
}

export function useStore<S>(store: { subscribe(fn: () => void): () => void; getSnapshot(): S } | null, fallback: S): S {
  const subscribe = useMemo(() => (store ? store.subscribe : () => () => {}), [store]);
  return useSyncExternalStore(subscribe, () => (store ? store.getSnapshot() : fallback));
}

export interface FeatureState {
  url: string | null;
  handle: DocHandle<FeatureDoc> | null;
  doc: Doc<FeatureDoc> | undefined;
  view: FeatureView | null;
  room: FeatureRoom | null;
  live: FeatureLive;
  error: string | null;
  loading: boolean;
}

const EMPTY_LIVE: FeatureLive = { presence: {}, typing: {}, heartbeats: {}, refused: null };

/** Everything a feature screen needs: the document, its view, and its room. */
export function useFeature(featureId: string): FeatureState {
  const conn = useConnection();
  const online = useConnectionState().status === "online";
  const [url, setUrl] = useState<string | null>(null);
  const [urlError, setUrlError] = useState<string | null>(null);

  useEffect(() => {
    let cancelled = false;
    setUrlError(null);
    conn
      .featureUrl(featureId)
      .then((u) => !cancelled && setUrl(u))
      .catch((e) => !cancelled && setUrlError(e instanceof Error ? e.message : String(e)));
    return () => {
      cancelled = true;
    };
    // retry the lookup when we come back online
  }, [conn, featureId, online && urlError !== null]);

  const { handle, error, loading } = useHandle<FeatureDoc>(url);
  const doc = useDoc(handle);
  const view = useMemo(() => (doc ? readFeature(doc) : null), [doc]);
  const room = useMemo(() => (handle ? conn.featureRoom(handle as DocHandle<unknown>) : null), [conn, handle]);
  const live = useStore(room, EMPTY_LIVE);
  // The transcripts of the most recent sessions, so they read offline too.
  const transcripts = useMemo(() => (view ? recentTranscripts(view.sessions, PREFETCH_TRANSCRIPTS).join("\n") : ""), [view]);
  useEffect(() => {
    if (transcripts) conn.prefetch(transcripts.split("\n"));
  }, [conn, transcripts]);
  return { url, handle, doc, view, room, live, error: urlError ?? error, loading: (!url && !urlError) || loading };
}

export interface TranscriptState {
  view: TranscriptView | null;
  stream: StreamState;
  error: string | null;
  loading: boolean;
}

export function useTranscript(url: string | null): TranscriptState {
  const conn = useConnection();
  const { handle, error, loading } = useHandle<TranscriptDoc>(url);
  const doc = useDoc(handle);
  const view = useMemo(() => (doc ? readTranscript(doc) : null), [doc]);
  const room: TranscriptRoom | null = useMemo(() => (handle ? conn.transcriptRoom(handle as DocHandle<unknown>) : null), [conn, handle]);
  const stream = useStore<StreamState>(room, {});
  useEffect(() => {
    room?.prune(view);
  }, [room, view]);
  return { view, stream, error, loading };
}

/** Keep the room told whether this person is active, idle or away. */
export function usePresence(room: FeatureRoom | null, sessionId: string | null) {
  useEffect(() => {
    if (!room) return;
    const release = room.watch(sessionId);
    let lastInput = Date.now();
    const update = () => room.setStatus(myPresenceStatus(document.visibilityState === "visible", lastInput, Date.now()));
    const onInput = () => {
      lastInput = Date.now();
      update();
    };
    const events = ["pointerdown", "keydown", "pointermove", "scroll", "focus"] as const;
    for (const e of events) window.addEventListener(e, onInput, { passive: true });
    document.addEventListener("visibilitychange", update);
    const t = setInterval(update, 15_000);
    update();
    return () => {
      for (const e of events) window.removeEventListener(e, onInput);
      document.removeEventListener("visibilitychange", update);
      clearInterval(t);
      release();
    };
  }, [room, sessionId]);
}
