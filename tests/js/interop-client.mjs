// The official automerge-repo JS client, as a browser would use it, against
// a Canopy server. Used by tests/integration/js_interop.rs.
//
// usage: node interop-client.mjs <sync-url> <doc-url> <session-id> <expected-learning> <feature-api-url>
// Prints one JSON line: { saw_rust_learning, queue_entry_id }.

import { Repo } from "@automerge/automerge-repo";
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket";
import * as A from "@automerge/automerge";

const [syncUrl, docUrl, sessionId, expectedLearning, featureApi] = process.argv.slice(2);
if (!featureApi) {
  console.error("usage: node interop-client.mjs <sync-url> <doc-url> <session-id> <expected-learning> <feature-api-url>");
  process.exit(2);
}

const deadline = Date.now() + 30_000;
async function until(what, check) {
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const repo = new Repo({ network: [new WebSocketClientAdapter(syncUrl)] });
await until("a connection to the server", () => repo.peers.length > 0);

const handle = await repo.find(docUrl);
await until("the learning written by Rust", () =>
  (handle.doc()?.learnings ?? []).some((l) => String(l.text) === expectedLearning),
);

const entryId = "q_" + Math.random().toString(36).slice(2, 12).padEnd(10, "0") + "jsclient00";
handle.change((d) => {
  // Plain JS strings: Automerge 3 stores them as collaborative Text.
  d.queue.push({
    id: entryId,
    session_id: sessionId,
    author: "js-user",
    text: "from the JS client",
    created_at: Date.now(),
    status: "queued",
  });
  d.learnings.push({
    id: "lrn_" + Math.random().toString(36).slice(2, 12).padEnd(10, "0") + "jsclient00",
    text: "learned in JS",
    author: "js-user",
    importance: "high",
    files: ["src/auth.rs"],
    created_at: Date.now(),
  });
  A.splice(d, ["notes"], 0, 0, "JS was here. ");
}, { message: "js client edits", time: Math.floor(Date.now() / 1000) });

// Stay connected until the server has the change (its JSON API shows it).
await until("the server to have the JS change", async () => {
  const r = await fetch(featureApi);
  if (!r.ok) return false;
  const body = await r.json();
  return body.document.queue.some((q) => q.id === entryId);
});

console.log(JSON.stringify({ saw_rust_learning: true, queue_entry_id: entryId }));
await repo.shutdown();
process.exit(0);
