/*
 * Canopy web client service worker: keeps the app shell (index.html and the
 * hashed files under /assets/) so that the app starts without a connection.
 * Documents are not cached here: they live in IndexedDB (automerge-repo).
 * /api and /sync are never touched.
 *
 * - Pages (navigations): network first, the cached index.html when offline
 *   (the app routes on the client, so any path gets the same shell).
 * - /assets/*: cache first (file names change with their content).
 */
const CACHE = "canopy-shell-v1";

async function precache() {
  const cache = await caches.open(CACHE);
  const res = await fetch("/index.html", { cache: "no-store" });
  if (!res.ok) return;
  const html = await res.clone().text();
  await cache.put("/index.html", res);
  const assets = new Set(html.match(/\/assets\/[^"'\s)]+/g) ?? []);
  // The WebAssembly is referenced from the JS, not from index.html.
  for (const js of [...assets].filter((a) => a.endsWith(".js"))) {
    try {
      const text = await (await fetch(js)).text();
      for (const m of text.match(/assets\/[A-Za-z0-9._-]+\.wasm/g) ?? []) assets.add("/" + m);
    } catch {
      // offline during install: the fetch handler fills the cache later
    }
  }
  await Promise.all([...assets].map((a) => cache.add(a).catch(() => {})));
}

self.addEventListener("install", (event) => {
  event.waitUntil(precache().then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("canopy-shell-") && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const req = event.request;
  if (req.method !== "GET") return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/api/") || url.pathname === "/sync" || url.pathname.startsWith("/sync/")) return;

  if (req.mode === "navigate") {
    event.respondWith(
      (async () => {
        try {
          const res = await fetch(req);
          if (res.ok && (res.headers.get("content-type") ?? "").includes("text/html")) {
            const cache = await caches.open(CACHE);
            await cache.put("/index.html", res.clone());
          }
          return res;
        } catch {
          const cached = await caches.match("/index.html");
          return cached ?? Response.error();
        }
      })(),
    );
    return;
  }

  if (url.pathname.startsWith("/assets/") || url.pathname === "/favicon.svg") {
    event.respondWith(
      (async () => {
        const cached = await caches.match(req);
        if (cached) return cached;
        const res = await fetch(req);
        if (res.ok) {
          const cache = await caches.open(CACHE);
          await cache.put(req, res.clone());
        }
        return res;
      })(),
    );
  }
});
