/**
 * The Canopy document schema and ephemeral messages, as TypeScript types.
 *
 * Source: `sync-protocol/schema/{feature,transcript,ephemeral}.ts` in this
 * repository (the contract; normative text in `sync-protocol/README.md`).
 * They are not copied: `@canopy/schema` is a Vite and TypeScript path alias
 * to `../../sync-protocol/schema` (see `vite.config.ts` and `tsconfig.json`),
 * so the client always builds against the protocol's own files.
 */
export * from "@canopy/schema/feature";
export {
  TRANSCRIPT_SCHEMA_VERSION,
  MAX_OUTPUT_CHARS,
  ROLES,
  PART_KINDS,
  TOOL_STATES,
} from "@canopy/schema/transcript";
export type {
  TranscriptDoc,
  Message as TranscriptMessage,
  Part as TranscriptPart,
  Role,
  PartKind,
  ToolState,
  Usage as MessageUsage,
} from "@canopy/schema/transcript";
export * from "@canopy/schema/ephemeral";
