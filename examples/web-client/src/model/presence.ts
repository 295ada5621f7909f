/**
 * Presence and typing from ephemeral messages.
 *
 * Peers send `presence` on change and every few seconds (README §7); a
 * person we have not heard from for `offlineAfterMs` is shown offline.
 * `typing` is sent (throttled) while someone composes a prompt; it expires
 * after `typingWindowMs` without a new one.
 */
import type { Presence, Typing } from "../schema";
import type { ParticipantView } from "../doc/feature";

/** How often this client sends `presence` while nothing changes. */
export const PRESENCE_INTERVAL_MS = 10_000;
/** Not heard from for this long: offline (three missed presences). */
export const OFFLINE_AFTER_MS = 3 * PRESENCE_INTERVAL_MS + 2_000;
/** How often this client sends `typing` while someone types. */
export const TYPING_THROTTLE_MS = 2_000;
/** A `typing` counts for this long. */
export const TYPING_WINDOW_MS = 5_000;

export interface PresenceRecord {
  userId: string;
  name: string | null;
  status: string;
  sessionId: string | null;
  /** When we last heard from them (local clock). */
  lastSeen: number;
}

export type PresenceRecords = Readonly<Record<string, PresenceRecord>>;

export function applyPresence(records: PresenceRecords, message: Presence, now: number): PresenceRecords {
  return {
    ...records,
    [message.user_id]: {
      userId: message.user_id,
      name: message.name ?? records[message.user_id]?.name ?? null,
      status: message.status,
      sessionId: message.session_id ?? null,
      lastSeen: now,
    },
  };
}

export type PresenceState = "active" | "idle" | "away" | "offline";

export interface ParticipantPresence {
  userId: string;
  name: string;
  role: string;
  state: PresenceState;
  /** The session they have open, if any. */
  sessionId: string | null;
  lastSeen: number | null;
  isMe: boolean;
  /** Typing a prompt right now (for `typingSession`). */
  typing: string | null;
}

const ORDER: Record<PresenceState, number> = { active: 0, idle: 1, away: 2, offline: 3 };

export function presenceState(record: PresenceRecord | undefined, now: number, offlineAfterMs = OFFLINE_AFTER_MS): PresenceState {
  if (!record || record.status === "left" || now - record.lastSeen > offlineAfterMs) return "offline";
  if (record.status === "active" || record.status === "idle" || record.status === "away") return record.status;
  return "active"; // a newer status value: they are here, at least
}

/**
 * Everyone to show: the feature's participants, plus anyone present who is
 * not (yet) in the participants mirror. The signed-in user is shown as
 * `myState`. Sorted: me first, then by state, then by name.
 */
export function presenceModel(
  participants: readonly ParticipantView[],
  records: PresenceRecords,
  typing: TypingRecords,
  now: number,
  me: string | null,
  myState: PresenceState = "active",
): ParticipantPresence[] {
  const out: ParticipantPresence[] = [];
  const seen = new Set<string>();
  const typingOf = (userId: string) => {
    const t = typing[userId];
    return t && now - t.at <= TYPING_WINDOW_MS ? t.sessionId : null;
  };
  for (const p of participants) {
    seen.add(p.userId);
    const record = records[p.userId];
    const isMe = p.userId === me;
    out.push({
      userId: p.userId,
      name: p.name,
      role: p.role,
      state: isMe ? myState : presenceState(record, now),
      sessionId: record?.sessionId ?? null,
      lastSeen: record?.lastSeen ?? null,
      isMe,
      typing: isMe ? null : typingOf(p.userId),
    });
  }
  for (const record of Object.values(records)) {
    if (seen.has(record.userId)) continue;
    const state = presenceState(record, now);
    if (state === "offline") continue;
    out.push({
      userId: record.userId,
      name: record.name ?? record.userId,
      role: "",
      state,
      sessionId: record.sessionId,
      lastSeen: record.lastSeen,
      isMe: record.userId === me,
      typing: typingOf(record.userId),
    });
  }
  out.sort(
    (a, b) =>
      Number(b.isMe) - Number(a.isMe) || ORDER[a.state] - ORDER[b.state] || a.name.localeCompare(b.name),
  );
  return out;
}

// ---------------------------------------------------------------- typing

export interface TypingRecord {
  sessionId: string;
  at: number;
}
export type TypingRecords = Readonly<Record<string, TypingRecord>>;

export function applyTyping(records: TypingRecords, message: Typing, now: number): TypingRecords {
  return { ...records, [message.user_id]: { sessionId: message.session_id, at: now } };
}

/** Users typing now (optionally: for one session), excluding `me`. */
export function typingUsers(
  records: TypingRecords,
  now: number,
  me: string | null,
  sessionId?: string,
  windowMs = TYPING_WINDOW_MS,
): string[] {
  return Object.entries(records)
    .filter(([userId, r]) => userId !== me && now - r.at <= windowMs && (sessionId === undefined || r.sessionId === sessionId))
    .map(([userId]) => userId)
    .sort();
}

/** "Ana is typing…", "Ana and Bo are typing…", "Ana, Bo and 2 others are typing…" */
export function typingSentence(names: readonly string[]): string {
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  const others = names.length - 2;
  return `${names[0]}, ${names[1]} and ${others} other${others === 1 ? "" : "s"} are typing…`;
}

/** What this client sends as its own status: away when the tab is hidden,
 * idle after a minute without input. */
export function myPresenceStatus(visible: boolean, lastInputAt: number, now: number, idleAfterMs = 60_000): "active" | "idle" | "away" {
  if (!visible) return "away";
  return now - lastInputAt > idleAfterMs ? "idle" : "active";
}
