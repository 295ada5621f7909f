/**
 * Test documents shaped like the ones the Canopy server creates: machine
 * values as scalar strings (ImmutableString), prose as Text, every root
 * container present (sync-protocol/README.md §4).
 */
import * as A from "@automerge/automerge/slim";
import type { FeatureDoc, TranscriptDoc } from "../schema";

export const s = (v: string) => new A.ImmutableString(v);

export const ALICE = "usr_aliceaaaaaaaaaaaaaaa";
export const BOB = "usr_bobbbbbbbbbbbbbbbbbb";
export const SES_A = "ses_aaaaaaaaaaaaaaaaaaaa";
export const SES_B = "ses_bbbbbbbbbbbbbbbbbbbb";

export function session(title: string, extra: Record<string, unknown> = {}) {
  return {
    title,
    scope: "",
    status: s("idle"),
    depends_on: [],
    created_by: s(ALICE),
    created_at: 1_700_000_000_000,
    sandbox: null,
    transcript: null,
    files_changed: [],
    pr: null,
    usage: { input_tokens: 0, output_tokens: 0, cost_usd: 0 },
    ...extra,
  };
}

/** A feature document as the server would create it, with two sessions. */
export function serverFeature(): A.Doc<FeatureDoc> {
  return A.from<Record<string, unknown>>(
    {
      schema: 1,
      feature_id: s("ftr_aaaaaaaaaaaaaaaaaaaa"),
      title: "Add OAuth login",
      description: "GitHub and Google sign-in",
      status: s("active"),
      repo: null,
      created_by: s(ALICE),
      created_at: 1_700_000_000_000,
      participants: {
        [ALICE]: { name: s("Alice"), role: s("owner") },
        [BOB]: { name: s("Bob"), role: s("contributor") },
      },
      sessions: {
        [SES_A]: session("research"),
        [SES_B]: session("implement", { depends_on: [s(SES_A)], created_at: 1_700_000_000_500 }),
      },
      queue: [],
      learnings: [],
      decisions: [],
      key_files: {},
      notes: "",
    },
    { actor: "5e7e5e7e" },
  ) as unknown as A.Doc<FeatureDoc>;
}

/** A transcript document as the server writes it. */
export function serverTranscript(messages: unknown[]): A.Doc<TranscriptDoc> {
  return A.from<Record<string, unknown>>({
    schema: 1,
    session_id: s(SES_A),
    feature_id: s("ftr_aaaaaaaaaaaaaaaaaaaa"),
    messages,
  }) as unknown as A.Doc<TranscriptDoc>;
}

/** A second replica of `doc` with its own actor (another person). */
export function fork<T>(doc: A.Doc<T>, actor: string): A.Doc<T> {
  return A.clone(doc, { actor });
}
