import { describe, expect, it } from "vitest";
import * as A from "@automerge/automerge/slim";
import type { FeatureDoc } from "../schema";
import { addLearning } from "../doc/write";
import { ALICE, BOB, SES_A, serverFeature } from "../test/fixtures";
import type { HistoryChange, JsonPatch, Touch } from "./history";
import {
  authorName,
  describeChanges,
  diffView,
  diffWords,
  formatHistoryQuery,
  groupChanges,
  historyFilter,
  nameBook,
  parseHistoryQuery,
  pathString,
  plain,
  redundantMessage,
  restoreState,
  sameHeads,
  timeRangeLabel,
  tokenize,
  withContext,
} from "./history";

const MIN = 60_000;
const T0 = 1_800_000_000_000;
let n = 0;
function change(author: string | null, time: number, touched: Touch[], extra: Partial<HistoryChange> = {}): HistoryChange {
  n++;
  const hash = n.toString(16).padStart(64, "0");
  return { hash, parents: ["ff".repeat(32)], time, author, actor: "aa", seq: n, message: null, summary: { touched, ops: touched.length }, ...extra };
}

const book = nameBook(
  [{ user_id: BOB, display_name: "Bob Stone", handle: "bob" }],
  [
    { userId: ALICE, name: "Alice" },
    { userId: BOB, name: "bob (old name)" },
  ],
  [{ id: SES_A, title: "research" }],
);

describe("authors", () => {
  it("names users, agents and the server", () => {
    expect(authorName(ALICE, book)).toBe("Alice");
    expect(authorName(BOB, book)).toBe("Bob Stone"); // the members endpoint wins
    expect(authorName(`agent:${SES_A}`, book)).toBe("Agent · research");
    expect(authorName("agent:ses_gone", book)).toBe("Agent · ses_gone");
    expect(authorName("@server", book)).toBe("Canopy");
    expect(authorName("usr_stranger", book)).toBe("usr_stranger");
    expect(authorName(null, book)).toBe("Unknown");
  });
});

describe("summaries", () => {
  it("says what a run of changes did, counting items and characters", () => {
    const changes = [
      change(BOB, T0 + 3 * MIN, [{ kind: "notes", action: "edited", inserted: 30, deleted: 5 }]),
      change(BOB, T0 + 2 * MIN, [{ kind: "learnings", id: "lrn_b", action: "added", inserted: 12 }]),
      change(BOB, T0 + MIN, [{ kind: "notes", action: "edited", inserted: 4 }]),
      change(BOB, T0, [{ kind: "learnings", id: "lrn_a", action: "added", inserted: 9 }]),
    ];
    expect(describeChanges(changes)).toBe("added 2 learnings, edited notes (+34 −5)");
  });

  it("reads changes in the listed (causal) order, not by their whole-second times", () => {
    const same = [
      change(BOB, T0, [{ kind: "decisions", id: "dec_1", action: "added" }]),
      change(BOB, T0, [{ kind: "notes", action: "edited", inserted: 3 }]),
    ];
    expect(describeChanges(same)).toBe("edited notes (+3), added a decision");
  });

  it("counts an item added and then edited as added, and names edited fields", () => {
    expect(
      describeChanges([
        change(ALICE, T0 + 1, [{ kind: "learnings", id: "lrn_a", action: "edited", fields: ["text"], inserted: 3 }]),
        change(ALICE, T0, [{ kind: "learnings", id: "lrn_a", action: "added" }]),
      ]),
    ).toBe("added a learning");
    expect(describeChanges([change("@server", T0, [{ kind: "queue", id: "q_1", action: "edited", fields: ["status", "started_at"] }])])).toBe(
      "updated a prompt (status, started_at)",
    );
    expect(describeChanges([change(ALICE, T0, [{ kind: "queue", id: "q_1", action: "added", inserted: 5 }])])).toBe("queued a prompt");
    expect(describeChanges([change(ALICE, T0, [{ kind: "learnings", id: "lrn_x", action: "deleted" }])])).toBe("deleted a learning");
    expect(describeChanges([change(ALICE, T0, [{ kind: "key_files", id: "src/a.rs", action: "added" }])])).toBe("added a key file");
    expect(describeChanges([change(ALICE, T0, [{ kind: "title", action: "edited", inserted: 2, deleted: 1 }])])).toBe("edited the title (+2 −1)");
    expect(describeChanges([change(ALICE, T0, [{ kind: "status", action: "edited" }])])).toBe("changed status");
  });

  it("reads a feature's first change as its creation, without the containers it made", () => {
    const first = change(ALICE, T0, [
      { kind: "title", action: "added", inserted: 5 },
      { kind: "learnings", action: "added" },
      { kind: "participants", action: "added" },
      { kind: "participants", id: ALICE, action: "added" },
    ], { parents: [] });
    expect(describeChanges([first])).toBe("created the feature");
  });

  it("tells a message that only repeats the summary", () => {
    expect(redundantMessage("delete a learning", "deleted a learning")).toBe(true);
    expect(redundantMessage("add a learning", "added a learning")).toBe(true);
    expect(redundantMessage("edit the notes", "edited notes (+36)")).toBe(true);
    expect(redundantMessage("mark a key file", "added a key file")).toBe(false);
    expect(redundantMessage("restore learnings/lrn_x as of 0f669dc2", "added a learning")).toBe(false);
    expect(redundantMessage(null, "added a learning")).toBe(true);
  });

  it("shortens long lists of phrases", () => {
    const c = change(ALICE, T0, ["a", "b", "c", "d", "e"].map((k): Touch => ({ kind: k, action: "edited" })));
    expect(describeChanges([c], 3)).toBe("changed a, changed b, 3 more");
  });
});

describe("grouping", () => {
  it("groups consecutive changes by one author within five minutes", () => {
    const changes = [
      change(ALICE, T0 + 30 * MIN, [{ kind: "notes", action: "edited", inserted: 1 }]),
      change(BOB, T0 + 12 * MIN, [{ kind: "notes", action: "edited", inserted: 2 }]),
      change(BOB, T0 + 9 * MIN, [{ kind: "learnings", id: "lrn_1", action: "added" }]),
      change(BOB, T0 + 5 * MIN, [{ kind: "learnings", id: "lrn_2", action: "added" }]),
      change(BOB, T0 - 10 * MIN, [{ kind: "learnings", id: "lrn_3", action: "added" }]),
      change(ALICE, T0 - 11 * MIN, [{ kind: "decisions", id: "dec_1", action: "added" }]),
    ];
    const groups = groupChanges(changes);
    expect(groups.map((g) => [g.author, g.changes.length])).toEqual([
      [ALICE, 1],
      [BOB, 3],
      [BOB, 1],
      [ALICE, 1],
    ]);
    expect(groups[1]).toMatchObject({ key: changes[1]!.hash, start: T0 + 5 * MIN, end: T0 + 12 * MIN, summary: "added 2 learnings, edited notes (+2)" });
  });

  it("uses authors this page knows better than the server's first answer", () => {
    const restore = change("@server", T0 + MIN, [{ kind: "learnings", id: "lrn_1", action: "added" }]);
    const before = change(ALICE, T0, [{ kind: "learnings", id: "lrn_1", action: "deleted" }]);
    const groups = groupChanges([restore, before], new Map([[restore.hash, ALICE]]));
    expect(groups).toHaveLength(1);
    expect(groups[0]!.author).toBe(ALICE);
  });

  it("labels time ranges", () => {
    const now = new Date(2030, 0, 10, 18, 0).getTime();
    const a = new Date(2030, 0, 10, 14, 2).getTime();
    const b = new Date(2030, 0, 10, 14, 7).getTime();
    expect(timeRangeLabel(a, a + 20_000, now)).not.toContain("–");
    expect(timeRangeLabel(a, b, now)).toContain("–");
    expect(timeRangeLabel(a - 86_400_000, b - 86_400_000, now)).toMatch(/^Yesterday /);
    expect(timeRangeLabel(a - 5 * 86_400_000, a, now)).toContain(" – ");
  });
});

describe("URL state", () => {
  const h1 = "ab".repeat(32);
  const h2 = "cd".repeat(32);
  it("round-trips, leaving heads and author ids readable", () => {
    const q = { at: [h1, h2], from: [h2], author: `agent:${SES_A}`, kind: "learnings", path: "learnings/lrn_a/text" };
    const s = formatHistoryQuery(q);
    expect(s).toBe(`?at=${h1},${h2}&from=${h2}&author=agent:${SES_A}&kind=learnings&path=learnings/lrn_a/text`);
    expect(parseHistoryQuery(s)).toEqual(q);
  });
  it("reads empty and odd parameters as absent", () => {
    expect(parseHistoryQuery("")).toEqual({ at: null, from: null, author: null, kind: null, path: null });
    expect(parseHistoryQuery("?at=,%20,&author=&path=%20")).toEqual({ at: null, from: null, author: null, kind: null, path: null });
    expect(parseHistoryQuery(`?at=${h1},${h1}&from=${h1}%2C${h2}`)).toMatchObject({ at: [h1], from: [h1, h2] });
    expect(formatHistoryQuery({ at: null, from: null, author: null, kind: null, path: null })).toBe("");
    expect(formatHistoryQuery({ at: null, from: null, author: "a&b=c", kind: null, path: null })).toBe("?author=a%26b%3Dc");
  });
  it("maps the filters to the API: a typed path wins over the kind", () => {
    expect(historyFilter(parseHistoryQuery("?kind=notes&author=usr_x"))).toEqual({ author: "usr_x", path: "notes" });
    expect(historyFilter(parseHistoryQuery("?kind=notes&path=learnings/lrn_a"))).toEqual({ author: null, path: "learnings/lrn_a" });
  });
  it("compares heads as sets", () => {
    expect(sameHeads([h1, h2], [h2, h1])).toBe(true);
    expect(sameHeads([h1], [h2])).toBe(false);
    expect(sameHeads(null, [h1])).toBe(false);
  });
  it("escapes path segments the way the server reads them", () => {
    expect(pathString(["key_files", "src/a~b.rs"])).toBe("key_files/src~1a~0b.rs");
  });
});

describe("text diff", () => {
  const rebuild = (segs: { op: string; text: string }[], side: "before" | "after") =>
    segs
      .filter((s) => s.op === "same" || s.op === (side === "before" ? "del" : "ins"))
      .map((s) => s.text)
      .join("");

  it("tokenizes words, spaces and punctuation", () => {
    expect(tokenize("Hello, wörld's 2nd-try!")).toEqual(["Hello", ",", " ", "wörld's", " ", "2nd-try", "!"]);
  });

  it("diffs by word and rebuilds both sides", () => {
    const before = "Hello notes, see you soon.";
    const after = "Hello world, again, see you soon!";
    const segs = diffWords(before, after);
    expect(rebuild(segs, "before")).toBe(before);
    expect(rebuild(segs, "after")).toBe(after);
    expect(segs).toEqual([
      { op: "same", text: "Hello " },
      { op: "del", text: "notes" },
      { op: "ins", text: "world" },
      { op: "same", text: ", " },
      { op: "ins", text: "again, " },
      { op: "same", text: "see you soon" },
      { op: "del", text: "." },
      { op: "ins", text: "!" },
    ]);
  });

  it("folds white space between changes into one replacement", () => {
    expect(diffWords("a b c", "x y z")).toEqual([
      { op: "del", text: "a b c" },
      { op: "ins", text: "x y z" },
    ]);
  });

  it("handles empty sides, equal texts and astral characters", () => {
    expect(diffWords("", "new text")).toEqual([{ op: "ins", text: "new text" }]);
    expect(diffWords("old", "")).toEqual([{ op: "del", text: "old" }]);
    expect(diffWords("same", "same")).toEqual([{ op: "same", text: "same" }]);
    expect(diffWords("", "")).toEqual([]);
    const segs = diffWords("ship it 🚀 today", "ship it 🎉 today");
    expect(segs).toEqual([
      { op: "same", text: "ship it " },
      { op: "del", text: "🚀" },
      { op: "ins", text: "🎉" },
      { op: "same", text: " today" },
    ]);
  });

  it("shows long unchanged stretches only around the change", () => {
    const long = "word ".repeat(200);
    const segs = withContext(diffWords(`${long}old ${long}`, `${long}new ${long}`), 20);
    expect(segs.map((s) => s.op)).toEqual(["gap", "same", "del", "ins", "same", "gap"]);
    expect(segs[1]!.text.length).toBeLessThanOrEqual(20);
    expect(withContext([{ op: "same", text: long }])).toEqual([{ op: "same", text: long }]);
  });
});

describe("comparing versions", () => {
  // Shapes as `GET /api/features/{id}/at` and `…/diff` answer them.
  const from = {
    title: "Probe",
    description: "desc one",
    notes: "Hello notes",
    learnings: [
      { id: "lrn_1", text: "first learning", author: ALICE, importance: "medium", files: [], created_at: 1 },
      { id: "lrn_2", text: "second learning", author: ALICE, importance: "medium", files: [], created_at: 2 },
    ],
    decisions: [],
    key_files: { "src/a/b.rs": { note: "why", sessions: [] } },
    queue: [],
    sessions: {},
  };
  const to = {
    ...from,
    notes: "Hello world, again",
    learnings: [{ id: "lrn_2", text: "2nd learning", author: ALICE, importance: "high", files: [], created_at: 2 }],
    decisions: [{ id: "dec_1", decision: "Use X", rationale: "because", alternatives: [], author: BOB, created_at: 3 }],
  };
  const patches: JsonPatch[] = [
    { path: ["learnings"], action: "delete", index: 0, length: 1, old: [from.learnings[0]] },
    { path: ["decisions"], action: "insert", index: 0, values: [{}] },
    { path: ["notes"], action: "splice_text", index: 6, value: "world, again" },
    { path: ["notes"], action: "delete", index: 18, length: 5, old: "notes" },
    { path: ["learnings", 0, "text"], action: "splice_text", index: 0, value: "2nd" },
    { path: ["learnings", 0, "text"], action: "delete", index: 3, length: 6, old: "second" },
    { path: ["learnings", 0], action: "put", key: "importance", value: "high" },
    { path: ["decisions", 0], action: "put", key: "id", value: "dec_1" },
    { path: ["decisions", 0, "decision"], action: "splice_text", index: 0, value: "Use X" },
  ];

  it("groups the differences by item, in a fixed order of kinds", () => {
    const view = diffView(from, to, patches);
    expect(view.map((s) => [s.title, s.patches])).toEqual([
      ["Notes", 2],
      ["Learnings", 4],
      ["Decisions", 3],
    ]);
    const [notes, learnings, decisions] = view;
    expect(notes!.items[0]!.fields[0]).toEqual({
      field: "",
      type: "text",
      segments: [
        { op: "same", text: "Hello " },
        { op: "del", text: "notes" },
        { op: "ins", text: "world, again" },
      ],
    });
    expect(learnings!.items.map((i) => [i.id, i.status, i.label])).toEqual([
      ["lrn_1", "deleted", "first learning"],
      ["lrn_2", "edited", "2nd learning"],
    ]);
    // Deleted: shown whole (empty fields left out), the label not repeated.
    expect(learnings!.items[0]!.fields).toEqual([
      { field: "text", type: "text", segments: [{ op: "del", text: "first learning" }] },
      { field: "importance", type: "value", before: "medium", after: null },
    ]);
    expect(learnings!.items.map((i) => i.labelShown)).toEqual([false, true]);
    expect(learnings!.items[1]!.fields).toEqual([
      { field: "text", type: "text", segments: [{ op: "del", text: "second" }, { op: "ins", text: "2nd" }, { op: "same", text: " learning" }] },
      { field: "importance", type: "value", before: "medium", after: "high" },
    ]);
    expect(decisions!.items[0]).toMatchObject({ id: "dec_1", status: "added", label: "Use X" });
    expect(decisions!.items[0]!.fields.map((f) => f.field)).toEqual(["decision", "rationale"]);
  });

  it("matches map entries by key and shows nothing where nothing differs", () => {
    const moved = { ...from, key_files: { "src/a/b.rs": { note: "why not", sessions: [] }, "src/new.rs": { note: "", sessions: [] } } };
    const view = diffView(from, moved, [{ path: ["key_files"], action: "put", key: "src/new.rs", value: {} }]);
    expect(view[0]!.items.map((i) => [i.id, i.status, i.labelShown])).toEqual([
      ["src/a/b.rs", "edited", true],
      ["src/new.rs", "added", true],
    ]);
    expect(diffView(from, from, [{ path: ["notes"], action: "splice_text", index: 0, value: "" }])).toEqual([]);
  });
});

describe("restoring", () => {
  it("tells whether a value is the same now, changed, or gone", () => {
    const live = A.change(serverFeature(), (d: FeatureDoc) => {
      addLearning(d, { text: "kept", author: ALICE, now: 5 });
    });
    const now = plain(live);
    const then = JSON.parse(JSON.stringify(now));
    const id = (now as { learnings: { id: string }[] }).learnings[0]!.id;
    expect(restoreState(then, live, ["learnings", id])).toBe("same");
    expect(restoreState(then, now, ["notes"])).toBe("same");
    then.learnings[0].text = "kept, then edited";
    expect(restoreState(then, live, ["learnings", id])).toBe("changed");
    expect(restoreState({ learnings: [{ id: "lrn_gone", text: "x" }] }, live, ["learnings", "lrn_gone"])).toBe("gone");
    expect(restoreState({ title: "Old" }, live, ["title"])).toBe("changed");
  });

  it("reads live Automerge values as the server's JSON", () => {
    const doc = A.from<Record<string, unknown>>({ s: new A.ImmutableString("x"), c: new A.Counter(3), d: new Date(7), n: null, l: [1, "t"] });
    expect(plain(doc)).toEqual({ s: "x", c: 3, d: 7, n: null, l: [1, "t"] });
  });
});
