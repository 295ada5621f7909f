/**
 * Reading a Feature document (schema 1) into plain view data.
 *
 * Follows sync-protocol/README.md §4: strings may be Text or scalars,
 * numbers may be any numeric type, missing or ill-typed fields read as their
 * defaults, and unknown enum values are kept as they are.
 */
import { SCHEMA_VERSION } from "../schema";
import { bool, list, num, optNum, optStr, record, identified, str, strList } from "./values";

export interface ParticipantView {
  userId: string;
  name: string;
  /** `owner`, `contributor`, `viewer`, `agent`, or a newer value. */
  role: string;
}

export interface SandboxView {
  backend: string;
  state: string;
  workspaceReady: boolean;
  branch: string | null;
  head: string | null;
  detail: string | null;
}

export interface PullRequestView {
  url: string;
  number: number;
  state: string;
}

export interface UsageView {
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
}

export interface SessionView {
  id: string;
  title: string;
  scope: string;
  status: string;
  dependsOn: string[];
  createdBy: string;
  createdAt: number;
  sandbox: SandboxView | null;
  transcript: string | null;
  filesChanged: string[];
  pr: PullRequestView | null;
  usage: UsageView;
}

export interface QueueEntryView {
  /** Index in the document's `queue` list. */
  index: number;
  id: string;
  sessionId: string;
  author: string;
  text: string;
  createdAt: number;
  status: string;
  startedAt: number | null;
  finishedAt: number | null;
  error: string | null;
  commit: string | null;
}

export interface LearningView {
  index: number;
  id: string;
  text: string;
  author: string;
  fromSession: string | null;
  importance: string;
  files: string[];
  createdAt: number;
}

export interface DecisionView {
  index: number;
  id: string;
  decision: string;
  rationale: string;
  alternatives: string[];
  author: string;
  fromSession: string | null;
  createdAt: number;
}

export interface KeyFileView {
  path: string;
  note: string;
  sessions: string[];
}

export interface RepoView {
  url: string;
  baseBranch: string;
  featureBranch: string | null;
  /** Sandboxes clone the whole history, not the shallow default. */
  fullClone: boolean;
}

export interface FeatureView {
  schema: number;
  /** False when the document's schema is newer than this client knows
   * (README §8): show it, but write nothing. */
  writable: boolean;
  featureId: string;
  title: string;
  description: string;
  status: string;
  repo: RepoView | null;
  createdBy: string;
  createdAt: number;
  participants: ParticipantView[];
  sessions: SessionView[];
  queue: QueueEntryView[];
  learnings: LearningView[];
  decisions: DecisionView[];
  keyFiles: KeyFileView[];
  notes: string;
}

function readSandbox(value: unknown): SandboxView | null {
  const m = record(value);
  if (!m) return null;
  return {
    backend: str(m.backend),
    state: str(m.state),
    workspaceReady: bool(m.workspace_ready),
    branch: optStr(m.branch),
    head: optStr(m.head),
    detail: optStr(m.detail),
  };
}

function readUsage(value: unknown): UsageView {
  const m = record(value) ?? {};
  return {
    inputTokens: num(m.input_tokens),
    outputTokens: num(m.output_tokens),
    costUsd: num(m.cost_usd),
  };
}

function readPr(value: unknown): PullRequestView | null {
  const m = record(value);
  if (!m) return null;
  const url = str(m.url);
  if (!url) return null;
  return { url, number: num(m.number), state: str(m.state) };
}

export function readSession(id: string, value: unknown): SessionView | null {
  const m = record(value);
  if (!m) return null;
  return {
    id,
    title: str(m.title),
    scope: str(m.scope),
    status: str(m.status, "pending"),
    dependsOn: strList(m.depends_on),
    createdBy: str(m.created_by),
    createdAt: num(m.created_at),
    sandbox: readSandbox(m.sandbox),
    transcript: optStr(m.transcript),
    filesChanged: strList(m.files_changed),
    pr: readPr(m.pr),
    usage: readUsage(m.usage),
  };
}

export function readQueueEntry(index: number, value: unknown): QueueEntryView | null {
  const item = identified(value);
  if (!item) return null;
  const { m, id } = item;
  return {
    index,
    id,
    sessionId: str(m.session_id),
    author: str(m.author),
    text: str(m.text),
    createdAt: num(m.created_at),
    status: str(m.status, "queued"),
    startedAt: optNum(m.started_at),
    finishedAt: optNum(m.finished_at),
    error: optStr(m.error),
    commit: optStr(m.commit),
  };
}

function readLearning(index: number, value: unknown): LearningView | null {
  const item = identified(value);
  if (!item) return null;
  const { m, id } = item;
  return {
    index,
    id,
    text: str(m.text),
    author: str(m.author),
    fromSession: optStr(m.from_session),
    importance: str(m.importance, "medium") || "medium",
    files: strList(m.files),
    createdAt: num(m.created_at),
  };
}

function readDecision(index: number, value: unknown): DecisionView | null {
  const item = identified(value);
  if (!item) return null;
  const { m, id } = item;
  return {
    index,
    id,
    decision: str(m.decision),
    rationale: str(m.rationale),
    alternatives: strList(m.alternatives),
    author: str(m.author),
    fromSession: optStr(m.from_session),
    createdAt: num(m.created_at),
  };
}

function readRepo(value: unknown): RepoView | null {
  const m = record(value);
  if (!m) return null;
  const url = str(m.url);
  if (!url) return null;
  return { url, baseBranch: str(m.base_branch, "main"), featureBranch: optStr(m.feature_branch), fullClone: m.full_clone === true };
}

/** Read a Feature document (or any value) into view data. Never throws. */
export function readFeature(doc: unknown): FeatureView {
  const root = record(doc) ?? {};
  const schema = num(root.schema, 0);

  const participants: ParticipantView[] = [];
  for (const [userId, value] of Object.entries(record(root.participants) ?? {})) {
    const m = record(value) ?? {};
    participants.push({ userId, name: str(m.name) || userId, role: str(m.role) });
  }
  participants.sort((a, b) => a.name.localeCompare(b.name) || a.userId.localeCompare(b.userId));

  const sessions: SessionView[] = [];
  for (const [id, value] of Object.entries(record(root.sessions) ?? {})) {
    const s = readSession(id, value);
    if (s) sessions.push(s);
  }
  sessions.sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id));

  const queue: QueueEntryView[] = [];
  list(root.queue).forEach((v, i) => {
    const e = readQueueEntry(i, v);
    if (e) queue.push(e);
  });

  const learnings: LearningView[] = [];
  list(root.learnings).forEach((v, i) => {
    const l = readLearning(i, v);
    if (l) learnings.push(l);
  });

  const decisions: DecisionView[] = [];
  list(root.decisions).forEach((v, i) => {
    const d = readDecision(i, v);
    if (d) decisions.push(d);
  });

  const keyFiles: KeyFileView[] = [];
  for (const [path, value] of Object.entries(record(root.key_files) ?? {})) {
    const m = record(value) ?? {};
    keyFiles.push({ path, note: str(m.note), sessions: strList(m.sessions) });
  }
  keyFiles.sort((a, b) => a.path.localeCompare(b.path));

  return {
    schema,
    writable: schema <= SCHEMA_VERSION,
    featureId: str(root.feature_id),
    title: str(root.title),
    description: str(root.description),
    status: str(root.status, "active") || "active",
    repo: readRepo(root.repo),
    createdBy: str(root.created_by),
    createdAt: num(root.created_at),
    participants,
    sessions,
    queue,
    learnings,
    decisions,
    keyFiles,
    notes: str(root.notes),
  };
}
