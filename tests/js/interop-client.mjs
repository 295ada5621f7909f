// The official automerge-repo JS client, as a browser would use it, against
// a Canopy server. Used by tests/integration/js_interop.rs.
//
// usage: node interop-client.mjs <base-url> <token> <doc-url> <session-id> <expected-learning> <feature-id>
// Prints one JSON line: { saw_rust_learning, queue_entry_id, peer_id }.
//
// It authenticates the way a browser does: an API token buys a one-time
// sync ticket (POST /api/sync-ticket), and the WebSocket URL carries it,
// because browsers cannot set headers on a WebSocket.

import { Repo } from "@automerge/automerge-repo";
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket";
import * as A from "@automerge/automerge";

const [base, token, docUrl, sessionId, expectedLearning, featureId] = process.argv.slice(2);
if (!featureId) {
  console.error(
    "usage: node interop-client.mjs <base-url> <token> <doc-url> <session-id> <expected-learning> <feature-id>",
  );
  process.exit(2);
}
const auth = { authorization: `Bearer ${token}` };
const featureApi = `${base}/api/features/${featureId}`;
// Authors must be the user who writes (the server verifies it).
const me = await (await fetch(`${base}/api/me`, { headers: auth })).json();

const deadline = Date.now() + 30_000;
async function until(what, check) {
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const ticketResponse = await fetch(`${base}/api/sync-ticket`, { method: "POST", headers: auth });
if (ticketResponse.status !== 201) {
  throw new Error(`sync ticket refused: ${ticketResponse.status} ${await ticketResponse.text()}`);
}
const { peer_id: peerId, url } = await ticketResponse.json();
// The server pins the connection to the ticket's peer id: use it as ours.
const repo = new Repo({ network: [new WebSocketClientAdapter(url)], peerId });
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
    author: me.user_id,
    text: "from the JS client",
    created_at: Date.now(),
    status: "queued",
  });
  d.learnings.push({
    id: "lrn_" + Math.random().toString(36).slice(2, 12).padEnd(10, "0") + "jsclient00",
    text: "learned in JS",
    author: me.user_id,
    importance: "high",
    files: ["src/auth.rs"],
    created_at: Date.now(),
  });
  A.splice(d, ["notes"], 0, 0, "JS was here. ");
}, { message: "js client edits", time: Math.floor(Date.now() / 1000) });

// Stay connected until the server has the change (its JSON API shows it).
await until("the server to have the JS change", async () => {
  const r = await fetch(featureApi, { headers: auth });
  if (!r.ok) return false;
  const body = await r.json();
  return body.document.queue.some((q) => q.id === entryId);
});

console.log(JSON.stringify({ saw_rust_learning: true, queue_entry_id: entryId, peer_id: peerId }));
await repo.shutdown();
process.exit(0);
