// The application imports `@automerge/automerge/slim` and initialises the
// WebAssembly itself (src/sync/wasm.ts). In Node (Vitest) the full entry point
// loads the WebAssembly from disk; importing it once initialises the shared
// module that the slim entry point uses too.
import "@automerge/automerge";
