/**
 * Writing to a Feature document from Node, the way the browser client does
 * (official automerge-repo over a ticket WebSocket), for setting up content
 * quickly: learnings, decisions, notes, key files, queue entries.
 *
 * Values follow the schema's write rules (sync-protocol/README.md §6):
 * ids, authors, statuses and paths are scalar strings, prose is Text.
 */
import { Repo } from "@automerge/automerge-repo";
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket";
import * as A from "@automerge/automerge";
import { T, until } from "./env.mjs";

const s = (x) => new A.ImmutableString(x);

export function newId(prefix) {
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  let out = prefix;
  for (let i = 0; i < 20; i++) out += alphabet[Math.floor(Math.random() * 32)];
  return out;
}

/** A Node peer as `user` with `docUrl` open. Call `close()` when done. */
export async function openDoc(server, user, docUrl) {
  const ticket = await server.api(user.token, "POST", "/sync-ticket");
  const repo = new Repo({ network: [new WebSocketClientAdapter(ticket.url)], peerId: ticket.peer_id });
  await until("the Node peer to connect", () => repo.peers.length > 0, { timeout: T.sync });
  const handle = await repo.find(docUrl);
  return {
    repo,
    handle,
    change(message, fn) {
      handle.change(fn, { message, time: Math.floor(Date.now() / 1000) });
    },
    /** Wait until the server's JSON snapshot satisfies `check(document)`. */
    async serverHas(what, featureId, check, timeout = T.sync) {
      await until(`the server to have ${what}`, async () => check((await server.snapshot(user.token, featureId)).document), { timeout, interval: 200 });
    },
    async close() {
      await repo.shutdown();
    },
  };
}

export function learning(author, text, { importance = "medium", files = [], at = Date.now() } = {}) {
  return { id: s(newId("lrn_")), text, author: s(author), importance: s(importance), files: files.map(s), created_at: at };
}

export function decision(author, text, rationale, alternatives = [], at = Date.now()) {
  return { id: s(newId("dec_")), decision: text, rationale, alternatives, author: s(author), created_at: at };
}

export function queueEntry(author, sessionId, text, at = Date.now()) {
  return { id: s(newId("q_")), session_id: s(sessionId), author: s(author), text, created_at: at, status: s("queued") };
}

export function keyFile(d, path, note, sessions = []) {
  d.key_files[path] = { note, sessions: sessions.map(s) };
}

export function appendNotes(d, text) {
  const current = typeof d.notes === "string" ? d.notes : "";
  A.splice(d, ["notes"], current.length, 0, text);
}
