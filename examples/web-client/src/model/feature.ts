/**
 * View models for the feature list and the dashboard.
 */
import type { DecisionView, FeatureView, LearningView, ParticipantView, SessionView } from "../doc/feature";
import { blockingSessions, isActive } from "./queue";

/** One row of `GET /api/features`. */
export interface FeatureListItem {
  feature_id: string;
  doc_url: string;
  title: string;
  status: string;
  created_by: string;
  created_at: number;
  updated_at: number;
}

export interface FeatureRow {
  featureId: string;
  docUrl: string;
  title: string;
  status: string;
  participants: ParticipantView[];
  sessionCount: number;
  runningSessions: number;
  waitingPrompts: number;
  /** Latest thing that happened, in Unix ms. */
  lastActivity: number;
  /** The document is here (synced or from IndexedDB). */
  loaded: boolean;
}

/** The newest time anything in the document mentions. */
export function lastActivity(feature: FeatureView): number {
  let t = feature.createdAt;
  for (const s of feature.sessions) t = Math.max(t, s.createdAt);
  for (const q of feature.queue) t = Math.max(t, q.createdAt, q.startedAt ?? 0, q.finishedAt ?? 0);
  for (const l of feature.learnings) t = Math.max(t, l.createdAt);
  for (const d of feature.decisions) t = Math.max(t, d.createdAt);
  return t;
}

export function featureRows(items: readonly FeatureListItem[], docs: ReadonlyMap<string, FeatureView>): FeatureRow[] {
  const rows = items.map((item): FeatureRow => {
    const doc = docs.get(item.feature_id);
    if (!doc) {
      return {
        featureId: item.feature_id,
        docUrl: item.doc_url,
        title: item.title,
        status: item.status,
        participants: [],
        sessionCount: 0,
        runningSessions: 0,
        waitingPrompts: 0,
        lastActivity: item.updated_at || item.created_at,
        loaded: false,
      };
    }
    return {
      featureId: item.feature_id,
      docUrl: item.doc_url,
      // The document is live; the list may be a cached copy.
      title: doc.title || item.title,
      status: doc.status || item.status,
      participants: doc.participants,
      sessionCount: doc.sessions.length,
      runningSessions: doc.sessions.filter((s) => s.status === "running" || s.status === "starting").length,
      waitingPrompts: doc.queue.filter((q) => isActive(q.status)).length,
      lastActivity: Math.max(item.updated_at || 0, lastActivity(doc)),
      loaded: true,
    };
  });
  const order: Record<string, number> = { active: 0, completed: 1, archived: 2 };
  return rows.sort((a, b) => (order[a.status] ?? 0) - (order[b.status] ?? 0) || b.lastActivity - a.lastActivity);
}

/** The signed-in user's role in a feature: from the participants mirror,
 * falling back to the members endpoint's answer. */
export function myRole(feature: FeatureView | null, me: string | null, fromMembers: string | null): string | null {
  if (fromMembers) return fromMembers;
  if (!feature || !me) return null;
  return feature.participants.find((p) => p.userId === me)?.role ?? null;
}

/** Owners and contributors write; viewers (and unknown roles) only read. */
export function canWrite(role: string | null, feature: FeatureView | null): boolean {
  if (feature && !feature.writable) return false;
  return role === "owner" || role === "contributor";
}

export type Tone = "neutral" | "info" | "good" | "warn" | "bad";

export function sessionTone(status: string): Tone {
  switch (status) {
    case "running":
    case "starting":
      return "info";
    case "ready":
    case "idle":
    case "completed":
      return "good";
    case "failed":
      return "bad";
    case "stopped":
    case "pending":
      return "neutral";
    default:
      return "neutral";
  }
}

export function queueTone(status: string): Tone {
  switch (status) {
    case "queued":
      return "neutral";
    case "dispatched":
    case "running":
      return "info";
    case "done":
      return "good";
    case "failed":
    case "rejected":
      return "bad";
    case "cancelled":
      return "warn";
    default:
      return "neutral";
  }
}

export interface SessionCard {
  session: SessionView;
  tone: Tone;
  blockedBy: SessionView[];
  dependsOn: { id: string; title: string; status: string; done: boolean }[];
  sandboxLabel: string | null;
  sandboxDetail: string | null;
  waitingPrompts: number;
  runningPrompt: string | null;
}

export function sessionCards(feature: FeatureView): SessionCard[] {
  const byId = new Map(feature.sessions.map((s) => [s.id, s]));
  return feature.sessions.map((session) => {
    const entries = feature.queue.filter((q) => q.sessionId === session.id);
    const running = entries.find((q) => q.status === "running" || q.status === "dispatched");
    const sb = session.sandbox;
    return {
      session,
      tone: sessionTone(session.status),
      blockedBy: blockingSessions(feature, session),
      dependsOn: session.dependsOn.map((id) => {
        const s = byId.get(id);
        return { id, title: s?.title || id, status: s?.status ?? "unknown", done: s?.status === "completed" };
      }),
      sandboxLabel: sb ? [sb.backend, sb.state].filter(Boolean).join(" · ") : null,
      sandboxDetail: sb?.detail ?? null,
      waitingPrompts: entries.filter((q) => q.status === "queued").length,
      runningPrompt: running ? running.text : null,
    };
  });
}

/** Case-insensitive match of every word of `query` in the item's text. */
function matches(haystack: string, query: string): boolean {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  const h = haystack.toLowerCase();
  return words.every((w) => h.includes(w));
}

export function filterLearnings(learnings: readonly LearningView[], query: string, names: (id: string) => string): LearningView[] {
  if (!query.trim()) return [...learnings];
  return learnings.filter((l) => matches([l.text, l.importance, names(l.author), ...l.files].join(" "), query));
}

export function filterDecisions(decisions: readonly DecisionView[], query: string, names: (id: string) => string): DecisionView[] {
  if (!query.trim()) return [...decisions];
  return decisions.filter((d) => matches([d.decision, d.rationale, ...d.alternatives, names(d.author)].join(" "), query));
}

/** A display name for a user id or `agent:<session>` author. */
export function nameOf(feature: FeatureView | null, userId: string, me?: string | null): string {
  if (!userId) return "unknown";
  if (me && userId === me) return "you";
  if (userId.startsWith("agent:")) {
    const sid = userId.slice("agent:".length);
    const s = feature?.sessions.find((x) => x.id === sid);
    return s ? `agent (${s.title})` : "agent";
  }
  return feature?.participants.find((p) => p.userId === userId)?.name ?? userId;
}

/** The transcript URLs of the `n` most recently created sessions that have
 * one, newest first: what a device keeps so they read offline. */
export function recentTranscripts(sessions: readonly SessionView[], n: number): string[] {
  return sessions
    .filter((s) => s.transcript)
    .sort((a, b) => b.createdAt - a.createdAt || a.id.localeCompare(b.id))
    .slice(0, n)
    .map((s) => s.transcript!);
}
