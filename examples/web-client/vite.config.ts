/// <reference types="vitest/config" />
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The protocol's TypeScript types live in the server's repository, two levels
// up; the client imports them through this alias instead of copying them.
const schemaDir = fileURLToPath(new URL("../../sync-protocol/schema", import.meta.url));

// Where `npm run dev` / `npm run preview` send /api and /sync:
// CANOPY_SERVER=http://127.0.0.1:8420 npm run dev
const server = process.env.CANOPY_SERVER ?? "http://127.0.0.1:8420";
const proxy = {
  "/api": { target: server, changeOrigin: true },
  "/sync": { target: server, changeOrigin: true, ws: true },
  "/healthz": { target: server, changeOrigin: true },
  "/readyz": { target: server, changeOrigin: true },
};

export default defineConfig({
  base: "/",
  plugins: [react()],
  resolve: {
    alias: { "@canopy/schema": schemaDir },
  },
  server: {
    proxy,
    fs: { allow: [".", schemaDir] },
  },
  preview: { proxy },
  build: {
    outDir: "dist",
    assetsDir: "assets",
    // Top-level await and modern syntax: every browser that has IndexedDB and
    // WebAssembly also has these.
    target: "es2022",
    // Source maps only on request (SOURCEMAP=1 npm run build): dist/ may be
    // embedded in the server binary.
    sourcemap: process.env.SOURCEMAP === "1",
    // React, Automerge's JS glue and cbor-x make one ~510 kB chunk (~160 kB
    // gzipped); the WebAssembly is a separate, cacheable file.
    chunkSizeWarningLimit: 700,
  },
  test: {
    environment: "node",
    include: ["src/**/*.test.ts"],
    setupFiles: ["src/test/setup.ts"],
  },
});
