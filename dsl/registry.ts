import type { Schema } from "effect"

/**
 * Helpers shared by the kind registries (attention, activation, norm, posenc). A registry is
 * a record from tag to kind description; the spec type is the union of their schema types.
 * The interpreter keeps a second record per registry, from the same tags to computations,
 * typed so that a tag without a computation does not compile.
 */
export type SpecOf<R extends Record<string, { schema: Schema.Top }>> = { [K in keyof R]: R[K]["schema"]["Type"] }[keyof R]

/** The spec of one tag of a registry. */
export type SpecOfTag<R extends Record<string, { schema: Schema.Top }>, K extends keyof R> = R[K]["schema"]["Type"]

/** The registry entry for `kind`, or an error naming the kind and every registered one. */
export const entryFor = <M>(registry: Readonly<Record<string, M>>, what: string, kind: unknown): M => {
  if (typeof kind !== "string" || !Object.hasOwn(registry, kind)) {
    throw new Error(`unknown ${what} kind ${JSON.stringify(kind)}; expected one of ${Object.keys(registry).join(", ")}`)
  }
  return registry[kind]!
}

/**
 * The entry that handles a spec, typed for the registry's whole spec union. TypeScript
 * cannot correlate a union value with the record entry for its tag, so the one unchecked
 * cast of every registry lives here; decoding guarantees the tag is registered.
 */
export const moduleFor = <M>(registry: Readonly<Record<string, unknown>>, what: string, spec: { readonly kind: string }): M =>
  entryFor(registry, what, spec.kind) as M
