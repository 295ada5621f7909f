import { createRoot } from "react-dom/client";
import { loadAutomerge } from "./sync/wasm";
import { wipePendingDatabases } from "./sync/local";
import { App } from "./ui/App";
import "./styles.css";

async function start() {
  const root = createRoot(document.getElementById("root")!);
  try {
    // A sign-out that asked to clear local data left a note: delete the
    // databases before anything opens them.
    await wipePendingDatabases();
    await loadAutomerge();
  } catch (e) {
    root.render(
      <main className="page narrow">
        <h1>Canopy could not start</h1>
        <p className="error-note">{e instanceof Error ? e.message : String(e)}</p>
      </main>,
    );
    return;
  }
  root.render(<App />);
}

void start();

// The app shell works offline once loaded (public/sw.js). Not in `vite dev`,
// where files are not hashed and a cache would only get in the way.
if (import.meta.env.PROD && "serviceWorker" in navigator) {
  window.addEventListener("load", () => {
    navigator.serviceWorker.register("/sw.js").catch(() => {
      // no service worker (e.g. not a secure context): online-only start
    });
  });
}
