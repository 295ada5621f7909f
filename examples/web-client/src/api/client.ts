/**
 * The Canopy REST API (`/api`, same origin). Every call carries the API
 * token as `Authorization: Bearer …`; errors are `{ error: { code, message } }`.
 */
import type { FeatureListItem } from "../model/feature";
import type { HistoryFilter, HistoryPage, JsonPatch, Restored } from "../model/history";

export class ApiError extends Error {
  constructor(
    /** HTTP status; 0 when the server could not be reached. */
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }

  /** The token is wrong, revoked or expired. */
  get unauthorized(): boolean {
    return this.status === 401;
  }

  /** No answer at all (offline, server down, timeout). */
  get network(): boolean {
    return this.status === 0;
  }
}

/** `GET …/sessions/{sid}/diff` (server API 6). */
export interface SessionDiff {
  head: string | null;
  files: FileDiff[];
  truncated: boolean;
  /** `sandbox`: live, uncommitted work included; `saved`: as the server
   * kept it at the end of the session's last run (the sandbox is stopped). */
  source?: "sandbox" | "saved";
  /** When a `saved` diff was kept (Unix ms). */
  saved_at?: number | null;
}

export interface FileDiff {
  path: string;
  status: "added" | "modified" | "deleted";
  additions: number;
  deletions: number;
  binary: boolean;
  patch?: string | null;
}

export interface Me {
  user_id: string;
  handle: string;
  display_name: string;
  email: string | null;
  token_id: string;
  scope: { kind: string };
  /** The linked GitHub account (server API 11), if any. */
  github?: { login: string } | null;
}

/** `GET /api/github/config` (public): what the sign-in page may offer. */
export interface GitHubConfig {
  sign_in: boolean;
  signup: boolean;
}

/** `POST …/sessions/{sid}/pr`: the pull request, or (when nobody could
 * open it) the compare page to open it by hand. */
export interface PullRequestOutcome {
  session_id: string;
  branch: string;
  head: string;
  pr: { url: string; number: number; state: string } | null;
  created?: boolean;
  opened_as?: "user" | "app";
  opened_by?: string;
  compare_url?: string;
  reason?: string;
}

/** What this server offers for GitHub; all off when it cannot be asked. */
export async function githubConfig(base = ""): Promise<GitHubConfig> {
  try {
    const r = await fetch(`${base}/api/github/config`, { cache: "no-store" });
    if (!r.ok) return { sign_in: false, signup: false };
    const j = (await r.json()) as Partial<GitHubConfig>;
    return { sign_in: j.sign_in === true, signup: j.signup === true };
  } catch {
    return { sign_in: false, signup: false };
  }
}

/** Where "Sign in with GitHub" goes: the server's login route, returning
 * to `path` (a path of this site). */
export function githubLoginUrl(path: string): string {
  const back = path.startsWith("/") && !path.startsWith("//") && !path.startsWith("/signin") ? path : "/";
  return `/api/github/login?return_to=${encodeURIComponent(back)}`;
}

export interface SyncTicket {
  peer_id: string;
  ticket: string;
  url: string;
  expires_in_secs: number;
}

export interface Member {
  user_id: string;
  handle: string;
  display_name: string;
  role: string;
  added_by: string;
  added_at: number;
}

export interface CreatedFeature {
  feature_id: string;
  doc_url: string;
  document_id: string;
  sync_url: string;
}

export interface NewFeature {
  title: string;
  description?: string;
  repo?: { url: string; base_branch?: string; feature_branch?: string | null; full_clone?: boolean } | null;
}

export interface NewSession {
  title: string;
  scope?: string;
  depends_on?: string[];
}

const TIMEOUT_MS = 15_000;

export class Api {
  constructor(
    private readonly token: string,
    private readonly base = "",
  ) {}

  async request<T>(method: string, path: string, body?: unknown, timeoutMs = TIMEOUT_MS): Promise<T> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    let response: Response;
    try {
      response = await fetch(`${this.base}/api${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal,
        cache: "no-store",
      });
    } catch (e) {
      throw new ApiError(0, "network", controller.signal.aborted ? "the server did not answer in time" : "cannot reach the server");
    } finally {
      clearTimeout(timer);
    }
    const text = await response.text();
    let json: unknown = null;
    if (text) {
      try {
        json = JSON.parse(text);
      } catch {
        json = null;
      }
    }
    if (!response.ok) {
      const err = (json as { error?: { code?: string; message?: string } } | null)?.error;
      throw new ApiError(response.status, err?.code ?? `http_${response.status}`, err?.message ?? (text || response.statusText));
    }
    return json as T;
  }

  me(): Promise<Me> {
    return this.request("GET", "/me");
  }

  /** What the session changed since it began: from its running sandbox,
   * else as kept at the end of its last run (409 `sandbox_not_running`
   * when it has neither). */
  sessionDiff(featureId: string, sessionId: string): Promise<SessionDiff> {
    return this.request("GET", `/features/${encodeURIComponent(featureId)}/sessions/${encodeURIComponent(sessionId)}/diff`);
  }

  /** A one-time ticket for `/sync`, for `peerId` (which must be
   * `u:<user id>:<suffix>`), so the replica keeps its identity. */
  syncTicket(peerId?: string): Promise<SyncTicket> {
    return this.request("POST", "/sync-ticket", peerId ? { peer_id: peerId } : undefined);
  }

  async listFeatures(): Promise<FeatureListItem[]> {
    const all: FeatureListItem[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 20; page++) {
      const q: string = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
      const r: { features: FeatureListItem[]; next_cursor: string | null } = await this.request("GET", `/features${q}`);
      all.push(...r.features);
      cursor = r.next_cursor;
      if (!cursor) break;
    }
    return all;
  }

  createFeature(body: NewFeature): Promise<CreatedFeature> {
    return this.request("POST", "/features", body);
  }

  /** JSON snapshot of the document: `{ feature_id, doc_url, heads, document }`. */
  getFeature(featureId: string): Promise<{ feature_id: string; doc_url: string; heads: string[] }> {
    return this.request("GET", `/features/${encodeURIComponent(featureId)}`);
  }

  async members(featureId: string): Promise<Member[]> {
    const r = await this.request<{ members: Member[] }>("GET", `/features/${encodeURIComponent(featureId)}/members`);
    return r.members;
  }

  createSession(featureId: string, body: NewSession): Promise<{ session_id: string }> {
    return this.request("POST", `/features/${encodeURIComponent(featureId)}/sessions`, body);
  }

  stopSession(featureId: string, sessionId: string): Promise<{ session_id: string; stopped: string | null }> {
    return this.request("POST", `/features/${encodeURIComponent(featureId)}/sessions/${encodeURIComponent(sessionId)}/stop`);
  }

  completeSession(featureId: string, sessionId: string): Promise<unknown> {
    return this.request("POST", `/features/${encodeURIComponent(featureId)}/sessions/${encodeURIComponent(sessionId)}/complete`);
  }

  /** A page of the feature document's changes, newest first (server API:
   * history). `cursor` is the previous page's `next`. */
  history(featureId: string, filter: HistoryFilter, options: { cursor?: string | null; limit?: number } = {}): Promise<HistoryPage> {
    const q = new URLSearchParams();
    if (options.limit) q.set("limit", String(options.limit));
    if (options.cursor) q.set("cursor", options.cursor);
    if (filter.author) q.set("author", filter.author);
    if (filter.path) q.set("path", filter.path);
    const s = q.toString();
    return this.request("GET", `/features/${encodeURIComponent(featureId)}/history${s ? `?${s}` : ""}`);
  }

  /** The whole feature document as JSON at `heads` (400 `bad_heads` for
   * heads it does not have). */
  featureAt(featureId: string, heads: readonly string[]): Promise<{ heads: string[]; document: unknown }> {
    return this.request("GET", `/features/${encodeURIComponent(featureId)}/at?heads=${heads.map(encodeURIComponent).join(",")}`);
  }

  /** The patches that turn the document at `from` into the one at `to`. */
  featureDiff(featureId: string, from: readonly string[], to: readonly string[]): Promise<{ patches: JsonPatch[] }> {
    const f = from.map(encodeURIComponent).join(",");
    const t = to.map(encodeURIComponent).join(",");
    return this.request("GET", `/features/${encodeURIComponent(featureId)}/diff?from=${f}&to=${t}`);
  }

  /** Write the value at `path` as it was at `heads` as a new change by the
   * caller (writers only; viewers get 403). */
  restore(featureId: string, heads: readonly string[], path: readonly string[]): Promise<Restored> {
    return this.request("POST", `/features/${encodeURIComponent(featureId)}/restore`, { heads, path });
  }

  /** The authorize URL that links the caller's GitHub account. */
  linkGitHub(): Promise<{ authorize_url: string }> {
    return this.request("POST", "/github/link");
  }

  /** Push the session's branch and open (or update) its pull request.
   * Pushing and asking GitHub can take a while: a longer timeout. */
  openPullRequest(featureId: string, sessionId: string): Promise<PullRequestOutcome> {
    return this.request("POST", `/features/${encodeURIComponent(featureId)}/sessions/${encodeURIComponent(sessionId)}/pr`, {}, 120_000);
  }

  toolOutput(featureId: string, sessionId: string, partId: string): Promise<{ part_id: string; tool: string; output: string }> {
    return this.request(
      "GET",
      `/features/${encodeURIComponent(featureId)}/sessions/${encodeURIComponent(sessionId)}/tool-outputs/${encodeURIComponent(partId)}`,
    );
  }
}
