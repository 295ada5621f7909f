/**
 * Tolerant readers for values loaded from Automerge documents.
 *
 * sync-protocol/README.md §4 "Reading": every string may be Text (loaded as
 * `string`) or a scalar (loaded as `ImmutableString`), every number may be
 * any numeric type (Int, Uint, F64, Timestamp, Counter), and a missing or
 * ill-typed field reads as its default.
 */
import * as A from "@automerge/automerge/slim";

/** A string field, or `fallback` when it is missing or not a string. */
export function str(value: unknown, fallback = ""): string {
  if (typeof value === "string") return value;
  if (isImmutableString(value)) return value.val;
  return fallback;
}

/** A string field, or `null` when it is missing, `null` or not a string. */
export function optStr(value: unknown): string | null {
  if (typeof value === "string") return value;
  if (isImmutableString(value)) return value.val;
  return null;
}

/** Whether `value` is an Automerge `ImmutableString` (a scalar string). */
export function isImmutableString(value: unknown): value is A.ImmutableString {
  return typeof value === "object" && value !== null && A.isImmutableString(value);
}

/** A number field: Int, Uint, F64, BigInt, Counter or Timestamp (Date). */
export function num(value: unknown, fallback = 0): number {
  if (typeof value === "number") return Number.isFinite(value) ? value : fallback;
  if (typeof value === "bigint") return Number(value);
  if (value instanceof Date) return value.getTime();
  if (typeof value === "object" && value !== null && A.isCounter(value)) return value.value;
  return fallback;
}

/** A number field, or `null` when it is missing or not a number. */
export function optNum(value: unknown): number | null {
  const sentinel = Number.NaN;
  const n = num(value, sentinel);
  return Number.isNaN(n) ? null : n;
}

export function bool(value: unknown, fallback = false): boolean {
  return typeof value === "boolean" ? value : fallback;
}

/** A list field, or `[]`. */
export function list(value: unknown): readonly unknown[] {
  return Array.isArray(value) ? value : [];
}

/** A map field, or `null` when it is not a map. */
export function record(value: unknown): Record<string, unknown> | null {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
  if (isImmutableString(value) || value instanceof Date || value instanceof Uint8Array) return null;
  return value as Record<string, unknown>;
}

/** A map with a non-empty string `id` (list items are found by it), or
 * `null` for anything else: the readers skip such items. */
export function identified(value: unknown): { m: Record<string, unknown>; id: string } | null {
  const m = record(value);
  if (!m) return null;
  const id = str(m.id);
  return id ? { m, id } : null;
}

/** A list of strings, skipping entries that are not strings. */
export function strList(value: unknown): string[] {
  const out: string[] = [];
  for (const item of list(value)) {
    const s = optStr(item);
    if (s !== null) out.push(s);
  }
  return out;
}
