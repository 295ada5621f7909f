/**
 * What the client keeps in localStorage: the API token, who it belongs to
 * (so the app starts offline), the last feature list, the document URL of
 * every feature opened here, and the server's last
 * announced heads per document (for the unsynced count after a reload).
 * Documents themselves live in IndexedDB (one database per user).
 */
import type { Me } from "../api/client";
import type { FeatureListItem } from "../model/feature";

const PREFIX = "canopy:";
const K = {
  token: `${PREFIX}token`,
  me: `${PREFIX}me`,
  features: (user: string) => `${PREFIX}features:${user}`,
  heads: (user: string) => `${PREFIX}server-heads:${user}`,
  docUrls: (user: string) => `${PREFIX}doc-urls:${user}`,
  wipe: `${PREFIX}wipe-databases`,
};

function read<T>(key: string): T | null {
  try {
    const raw = localStorage.getItem(key);
    return raw === null ? null : (JSON.parse(raw) as T);
  } catch {
    return null;
  }
}

function write(key: string, value: unknown) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // storage full or disabled: the app still works, it just forgets more
  }
}

export function databaseName(userId: string): string {
  return `canopy:${userId}`;
}

export const local = {
  token: () => read<string>(K.token),
  me: () => read<Me>(K.me),
  saveSignIn(token: string, me: Me) {
    write(K.token, token);
    write(K.me, me);
  },
  features: (userId: string) => read<FeatureListItem[]>(K.features(userId)),
  saveFeatures: (userId: string, items: FeatureListItem[]) => write(K.features(userId), items),
  /** Feature id → document URL of every feature this device has opened
   * (a feature opened from a link, never from the list, must open offline too). */
  docUrls: (userId: string) => read<Record<string, string>>(K.docUrls(userId)) ?? {},
  saveDocUrls: (userId: string, urls: Record<string, string>) => write(K.docUrls(userId), urls),
  serverHeads: (userId: string) => read<Record<string, string[]>>(K.heads(userId)) ?? {},
  saveServerHeads: (userId: string, heads: Record<string, string[]>) => write(K.heads(userId), heads),

  /** Forget the token (the local replica stays, for the next sign-in). */
  signOut() {
    localStorage.removeItem(K.token);
    localStorage.removeItem(K.me);
  },

  /**
   * Forget everything: every `canopy:` key, and every document database.
   * IndexedDB cannot be deleted while the page has it open, so the
   * databases are listed here and deleted on the next start, before
   * anything opens them (`wipePendingDatabases`); the caller reloads.
   */
  clearAll(userIds: string[]) {
    const keys: string[] = [];
    for (let i = 0; i < localStorage.length; i++) {
      const k = localStorage.key(i);
      if (k?.startsWith(PREFIX)) keys.push(k);
    }
    for (const k of keys) localStorage.removeItem(k);
    write(K.wipe, userIds.map(databaseName));
  },
};

/** Delete the databases `clearAll` listed. Call before opening any. */
export async function wipePendingDatabases(): Promise<void> {
  const names = read<string[]>(K.wipe);
  if (!names) return;
  const all = new Set(names);
  try {
    // Also any other canopy database this browser holds.
    for (const db of (await indexedDB.databases?.()) ?? []) if (db.name?.startsWith("canopy:")) all.add(db.name);
  } catch {
    // indexedDB.databases() is not everywhere
  }
  await Promise.all(
    [...all].map(
      (name) =>
        new Promise<void>((resolve) => {
          const req = indexedDB.deleteDatabase(name);
          req.onsuccess = req.onerror = req.onblocked = () => resolve();
        }),
    ),
  );
  localStorage.removeItem(K.wipe);
}
