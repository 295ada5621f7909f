/**
 * Loads Automerge's WebAssembly. The app imports the `slim` entry points of
 * `@automerge/automerge` and `@automerge/automerge-repo` (no WebAssembly
 * bundled in JS), and fetches the `.wasm` file that Vite emits under
 * `/assets/` (the `?url` import). Nothing touches Automerge before this
 * promise resolves (see main.tsx).
 */
import { initializeWasm } from "@automerge/automerge/slim";
import wasmUrl from "@automerge/automerge/automerge.wasm?url";

let ready: Promise<void> | null = null;

export function loadAutomerge(): Promise<void> {
  ready ??= initializeWasm(wasmUrl);
  return ready;
}
