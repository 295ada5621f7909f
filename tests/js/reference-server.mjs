// The JS reference sync server, built the way automerge-repo-sync-server is:
// the official WebSocket server adapter plus Node filesystem storage, no
// announcing (it serves what clients ask for). The benchmark runs Canopy
// against this, side by side.
//
// usage: node reference-server.mjs <port|0> <data-dir>
// Prints "listening on ws://127.0.0.1:<port>" once ready; exits on SIGTERM.

import http from "node:http";
import os from "node:os";
import { WebSocketServer } from "ws";
import { Repo } from "@automerge/automerge-repo";
import { WebSocketServerAdapter } from "@automerge/automerge-repo-network-websocket";
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs";

const [portArg, dataDir] = process.argv.slice(2);
if (!dataDir) {
  console.error("usage: node reference-server.mjs <port> <data-dir>");
  process.exit(2);
}

const server = http.createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/plain" });
  res.end("automerge-repo reference sync server is running");
});
const wss = new WebSocketServer({ noServer: true, maxPayload: 64 << 20 });
server.on("upgrade", (request, socket, head) => {
  wss.handleUpgrade(request, socket, head, (ws) => wss.emit("connection", ws, request));
});

const repo = new Repo({
  network: [new WebSocketServerAdapter(wss)],
  storage: new NodeFSStorageAdapter(dataDir),
  peerId: `storage-server-${os.hostname()}`,
  sharePolicy: async () => false,
});

server.listen(Number(portArg), "127.0.0.1", () => {
  console.log(`listening on ws://127.0.0.1:${server.address().port}`);
});

async function stop() {
  wss.close();
  server.close();
  await repo.shutdown();
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
