// Feature document schema 1 round trip between canopy-protocol (Rust) and the
// official @automerge/automerge, as a browser client uses it.
//
// Driven by sync-protocol/tests/js_roundtrip.rs. Modes:
//
//   node schema-roundtrip.mjs read <doc-file> <expected.json> [--rust-written]
//       Load a saved document and compare every field with the expectation
//       (the Rust reader's JSON). With --rust-written, also check the
//       representation Rust promises: prose is Text (a JS string), machine
//       values are scalar strings (ImmutableString in JS).
//   node schema-roundtrip.mjs write <doc-file>
//       Create and edit a feature document the way a browser client does
//       (plain strings, Date.now(), push, splice, updateText), save it, and
//       print the document as JSON on stdout.
//   node schema-roundtrip.mjs ephemeral <messages.json>
//       Decode Rust-encoded ephemeral messages ([{hex, expect}]) with the
//       codec automerge-repo uses for handle.broadcast, then print JS-encoded
//       messages in the same form on stdout.
//
// Exits non-zero with one line per mismatch.

import * as A from "@automerge/automerge";
import { cbor } from "@automerge/automerge-repo";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";

// JSON.stringify that shows BigInts (cbor-x decodes 64-bit integers as
// BigInt) instead of throwing.
const show = (v) => JSON.stringify(v, (_, x) => (typeof x === "bigint" ? `${x}n` : x));

function fail(lines) {
  for (const line of lines) console.error(line);
  process.exit(1);
}

// The document as plain JSON: Text and ImmutableString both become strings.
function plain(value, path = "") {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") return value;
  if (value instanceof A.ImmutableString) return value.toString();
  if (A.isCounter(value)) return value.value;
  if (value instanceof Date) return value.getTime();
  if (Array.isArray(value)) return value.map((v, i) => plain(v, `${path}[${i}]`));
  if (value instanceof Uint8Array) fail([`${path}: unexpected bytes`]);
  if (typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = plain(v, path ? `${path}.${k}` : k);
    return out;
  }
  fail([`${path}: unexpected ${typeof value}`]);
}

function compare(actual, expected, path, errors) {
  const where = path || "(root)";
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return errors.push(`${where}: expected a list, got ${show(actual)}`);
    if (actual.length !== expected.length) {
      errors.push(`${where}: expected ${expected.length} items, got ${actual.length}`);
    }
    const n = Math.min(actual.length, expected.length);
    for (let i = 0; i < n; i++) compare(actual[i], expected[i], `${path}[${i}]`, errors);
    return;
  }
  if (expected !== null && typeof expected === "object") {
    if (actual === null || typeof actual !== "object" || Array.isArray(actual)) {
      return errors.push(`${where}: expected a map, got ${show(actual)}`);
    }
    for (const k of new Set([...Object.keys(expected), ...Object.keys(actual)])) {
      const sub = path ? `${path}.${k}` : k;
      if (!(k in actual)) errors.push(`${sub}: missing (expected ${show(expected[k])})`);
      else if (!(k in expected)) errors.push(`${sub}: unexpected ${show(actual[k])}`);
      else compare(actual[k], expected[k], sub, errors);
    }
    return;
  }
  if (actual !== expected) {
    errors.push(`${where}: expected ${show(expected)}, got ${show(actual)}`);
  }
}

// Must mirror is_prose in sync-protocol/tests/feature_schema.rs and the
// README: the strings a person writes.
function isProse(path) {
  const [a, , c, d] = path;
  switch (path.length) {
    case 1:
      return ["title", "description", "notes"].includes(a);
    case 3:
      return (
        (a === "sessions" && (c === "title" || c === "scope")) ||
        ((a === "queue" || a === "learnings") && c === "text") ||
        (a === "decisions" && (c === "decision" || c === "rationale")) ||
        (a === "key_files" && c === "note")
      );
    case 4:
      return a === "decisions" && c === "alternatives" && d !== undefined;
    default:
      return false;
  }
}

function checkRepresentation(value, path, errors) {
  const where = path.join(".");
  if (typeof value === "string") {
    if (!isProse(path)) errors.push(`${where}: machine value written as Text, expected a scalar string`);
  } else if (value instanceof A.ImmutableString) {
    if (isProse(path)) errors.push(`${where}: prose written as a scalar string, expected Text`);
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => checkRepresentation(v, [...path, String(i)], errors));
  } else if (value !== null && typeof value === "object" && !(value instanceof Date) && !A.isCounter(value)) {
    for (const [k, v] of Object.entries(value)) checkRepresentation(v, [...path, k], errors);
  }
}

function checkChangeMetadata(doc, errors) {
  for (const bytes of A.getAllChanges(doc)) {
    const change = A.decodeChange(bytes);
    if (!(change.time > 1_600_000_000)) errors.push(`change ${change.hash}: time ${change.time} is not a real time`);
    if (!change.message) errors.push(`change ${change.hash}: no message`);
  }
}

function read(file, expectedFile, flags) {
  const doc = A.load(new Uint8Array(readFileSync(file)));
  const expected = JSON.parse(readFileSync(expectedFile, "utf8"));
  const errors = [];
  compare(plain(doc), expected, "", errors);
  if (flags.includes("--rust-written")) checkRepresentation(doc, [], errors);
  checkChangeMetadata(doc, errors);
  if (errors.length) fail([`${file} does not match ${expectedFile}:`, ...errors]);
  console.log(JSON.stringify({ ok: true, changes: A.getAllChanges(doc).length }));
}

const ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";
const newId = (prefix) => prefix + Array.from(randomBytes(20), (b) => ALPHABET[b & 31]).join("");
const opts = (message) => ({ message, time: Math.floor(Date.now() / 1000) });

function write(file) {
  const featureId = newId("ftr_");
  const s1 = newId("ses_");
  const s2 = newId("ses_");
  let doc = A.change(A.init(), opts("create feature"), (d) => {
    d.schema = 1;
    d.feature_id = featureId;
    d.title = "Café login ☕";
    d.description = "Written by a browser.";
    d.status = "active";
    d.repo = { url: "https://github.com/acme/web.git", base_branch: "main", feature_branch: null, full_clone: true };
    d.created_by = "js-alice";
    d.created_at = Date.now();
    d.participants = { "js-alice": { name: "Alice", role: "owner" } };
    d.sessions = {};
    d.queue = [];
    d.learnings = [];
    d.decisions = [];
    d.key_files = {};
    d.notes = "";
  });
  doc = A.change(doc, opts("add sessions"), (d) => {
    d.sessions[s1] = {
      title: "Research 🔎",
      scope: "Read the auth code.",
      status: "pending",
      depends_on: [],
      created_by: "js-alice",
      created_at: Date.now(),
      sandbox: null,
      transcript: null,
      files_changed: [],
      pr: null,
      usage: { input_tokens: 0, output_tokens: 0, cost_usd: 0 },
    };
    d.sessions[s2] = {
      title: "Implement",
      scope: "",
      status: "running",
      depends_on: [s1],
      created_by: "js-bob",
      created_at: Date.now(),
      sandbox: { backend: "docker", state: "running", workspace_ready: true, branch: "canopy/x", head: null },
      transcript: "automerge:4NMNnkMhL8jXrdJ9jamS58PAVdXu",
      files_changed: ["web/login.tsx"],
      pr: { url: "https://github.com/acme/web/pull/7", number: 7, state: "open" },
      usage: { input_tokens: 1500, output_tokens: 320, cost_usd: 0.125 },
    };
    d.participants["js-bob"] = { name: "Bob", role: "contributor" };
  });
  doc = A.change(doc, opts("queue prompts"), (d) => {
    d.queue.push({ id: newId("q_"), session_id: s1, author: "js-alice", text: "Find the login handler.", created_at: Date.now(), status: "queued" });
    d.queue.push({ id: newId("q_"), session_id: s2, author: "js-bob", text: "Never mind 🙃", created_at: Date.now(), status: "queued" });
  });
  doc = A.change(doc, opts("cancel prompt"), (d) => {
    d.queue[1].status = "cancelled";
    d.queue[1].finished_at = Date.now();
  });
  doc = A.change(doc, opts("context"), (d) => {
    d.learnings.push({
      id: newId("lrn_"),
      text: "Sessions live in Redis.",
      author: "js-alice",
      from_session: s1,
      importance: "low",
      files: ["server/session.ts", "server/redis.ts"],
      created_at: Date.now(),
    });
    d.decisions.push({
      id: newId("dec_"),
      decision: "Keep cookies",
      rationale: "Less change.",
      alternatives: ["JWT in localStorage"],
      author: "js-bob",
      created_at: Date.now(),
    });
    d.key_files["web/login.tsx"] = { note: "Entry point.", sessions: [s1] };
  });
  doc = A.change(doc, opts("notes"), (d) => {
    A.updateText(d, ["notes"], "Hello 🚀 world");
    // JS indexes text in UTF-16 code units.
    A.splice(d, ["notes"], "Hello 🚀 ".length, 0, "big ");
    A.updateText(d, ["title"], "Café login ☕ (JS)");
  });
  writeFileSync(file, A.save(doc));
  console.log(JSON.stringify(plain(doc)));
}

function ephemeral(file) {
  const errors = [];
  for (const { hex, expect } of JSON.parse(readFileSync(file, "utf8"))) {
    const got = cbor.decode(Buffer.from(hex, "hex"));
    compare(got, expect, expect.type, errors);
  }
  if (errors.length) fail(["Rust-encoded ephemeral messages differ:", ...errors]);
  const messages = [
    { type: "presence", user_id: "js-alice", name: "Alice", status: "idle", session_id: "ses_x", cursor: { path: "a.ts", line: 3 } },
    // A browser may leave optional fields undefined.
    { type: "presence", user_id: "js-bob", name: undefined, status: "active", cursor: null },
    { type: "typing", user_id: "js-alice", session_id: "ses_x" },
    { type: "heartbeat", session_id: "ses_x", sandbox_state: "ready", at: Date.now() },
    { type: "agent_output", session_id: "ses_x", message_id: "m", part_id: "p", kind: "tool", text: "ok ✅", seq: 2 ** 40 },
    { type: "reaction", user_id: "js-alice", emoji: "👍" },
  ];
  const out = messages.map((m) => ({
    hex: Buffer.from(cbor.encode(m)).toString("hex"),
    expect: JSON.parse(JSON.stringify(m)),
  }));
  console.log(JSON.stringify(out));
}

const [mode, ...args] = process.argv.slice(2);
if (mode === "read" && args.length >= 2) read(args[0], args[1], args.slice(2));
else if (mode === "write" && args.length === 1) write(args[0]);
else if (mode === "ephemeral" && args.length === 1) ephemeral(args[0]);
else {
  fail([
    "usage: node schema-roundtrip.mjs read <doc-file> <expected.json> [--rust-written]",
    "       node schema-roundtrip.mjs write <doc-file>",
    "       node schema-roundtrip.mjs ephemeral <messages.json>",
  ]);
}
