/**
 * The prompt queue as screens show it: per session, in the list's merged
 * order (README §6.4), with each waiting entry's place in line.
 */
import type { FeatureView, QueueEntryView, SessionView } from "../doc/feature";

/** Statuses of an entry that still waits or runs. */
export const ACTIVE_STATUSES = ["queued", "dispatched", "running"] as const;
export const TERMINAL_STATUSES = ["done", "failed", "cancelled", "rejected"] as const;

export function isActive(status: string): boolean {
  return (ACTIVE_STATUSES as readonly string[]).includes(status);
}

export function isTerminal(status: string): boolean {
  return (TERMINAL_STATUSES as readonly string[]).includes(status);
}

export interface QueueItem extends QueueEntryView {
  sessionTitle: string;
  /**
   * Entries ahead of this one in its session's line: 0 for the entry that
   * runs (or runs next). `null` once the entry is finished, or for a status
   * this client does not know.
   */
  position: number | null;
  mine: boolean;
  /** Only the author may withdraw, and only while `queued` (README §6.2). */
  canCancel: boolean;
  /** The session waits for sessions in `depends_on` to be completed. */
  blocked: boolean;
}

export interface QueueModel {
  /** Waiting and running entries, in list order. */
  active: QueueItem[];
  /** Finished entries, newest first. */
  finished: QueueItem[];
}

/** Sessions in `depends_on` that are not `completed` yet. */
export function blockingSessions(feature: FeatureView, session: SessionView): SessionView[] {
  const byId = new Map(feature.sessions.map((s) => [s.id, s]));
  return session.dependsOn
    .map((id) => byId.get(id) ?? { ...placeholderSession(id) })
    .filter((s) => s.status !== "completed");
}

function placeholderSession(id: string): SessionView {
  return {
    id,
    title: id,
    scope: "",
    status: "unknown",
    dependsOn: [],
    createdBy: "",
    createdAt: 0,
    sandbox: null,
    transcript: null,
    filesChanged: [],
    pr: null,
    usage: { inputTokens: 0, outputTokens: 0, costUsd: 0 },
  };
}

export function queueModel(
  feature: FeatureView,
  me: string | null,
  options: { sessionId?: string; canWrite?: boolean } = {},
): QueueModel {
  const sessions = new Map(feature.sessions.map((s) => [s.id, s]));
  const ahead = new Map<string, number>();
  const active: QueueItem[] = [];
  const finished: QueueItem[] = [];
  const canWrite = options.canWrite ?? true;
  for (const entry of feature.queue) {
    const session = sessions.get(entry.sessionId);
    let position: number | null = null;
    if (isActive(entry.status)) {
      position = ahead.get(entry.sessionId) ?? 0;
      ahead.set(entry.sessionId, position + 1);
    }
    if (options.sessionId !== undefined && entry.sessionId !== options.sessionId) continue;
    const mine = me !== null && entry.author === me;
    const item: QueueItem = {
      ...entry,
      sessionTitle: session?.title || entry.sessionId,
      position,
      mine,
      canCancel: canWrite && mine && entry.status === "queued",
      blocked: session ? blockingSessions(feature, session).length > 0 : false,
    };
    if (isActive(entry.status)) active.push(item);
    else if (isTerminal(entry.status)) finished.push(item);
    else active.push(item); // unknown status: show it, never touch it
  }
  finished.sort((a, b) => (b.finishedAt ?? b.createdAt) - (a.finishedAt ?? a.createdAt) || b.index - a.index);
  return { active, finished };
}

/** Where the user's next waiting prompt for a session sits. */
export function myPlaceInLine(
  feature: FeatureView,
  me: string | null,
  sessionId: string,
): { entryId: string; position: number; waiting: number } | null {
  const { active } = queueModel(feature, me, { sessionId });
  const mineQueued = active.filter((e) => e.mine && e.status === "queued" && e.position !== null);
  const first = mineQueued[0];
  if (!first || first.position === null) return null;
  return { entryId: first.id, position: first.position, waiting: mineQueued.length };
}

/** "running", "next", "2 ahead", "done", … */
export function positionLabel(item: QueueItem): string {
  if (item.position === null) return item.status;
  if (item.status === "running" || item.status === "dispatched") return item.status;
  if (item.position === 0) return item.blocked ? "next, waiting on dependencies" : "next";
  return `${item.position} ahead`;
}
