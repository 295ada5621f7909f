/**
 * "Unsynced changes": local changes the server has not acknowledged.
 *
 * The server announces its heads in its sync messages only after every
 * change up to those heads is committed to its database (README §3
 * "Durability"). The network adapter reads those heads from every `sync`
 * message the server sends (`Automerge.decodeSyncMessage(data).heads`), so
 * "unsynced" is exact: the changes in our document that are not ancestors of
 * the server's last announced heads.
 */
import * as A from "@automerge/automerge/slim";

/**
 * How many changes `doc` has that the server (whose heads are `serverHeads`)
 * does not. `null` when it cannot be told: the server's heads are unknown,
 * or the server has changes we have not received yet (then the answer will
 * come once they arrive).
 */
export function unsyncedCount(doc: A.Doc<unknown>, serverHeads: readonly string[] | undefined): number | null {
  if (!serverHeads) return null;
  for (const head of serverHeads) {
    if (!A.hasHeads(doc, [head])) return null;
  }
  return A.getChangesMetaSince(doc, [...serverHeads]).length;
}
