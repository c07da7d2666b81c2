import { Schema } from "effect"

/**
 * Helpers shared by the kind registries (attention, activation, norm, posenc). A registry is
 * a record from tag to kind module; the spec type is the union of the modules' schema types.
 */
export type SpecOf<R extends Record<string, { schema: Schema.Top }>> = { [K in keyof R]: R[K]["schema"]["Type"] }[keyof R]

/** Schema of any spec in the registry: the union of the modules' schemas. */
export const unionSchema = <R extends Record<string, { schema: Schema.Top }>>(registry: R): Schema.Codec<SpecOf<R>> =>
  Schema.Union(Object.values(registry).map((k) => k.schema)) as unknown as Schema.Codec<SpecOf<R>>

/**
 * The module that handles a spec, typed for the registry's whole spec union. TypeScript
 * cannot correlate a union value with the record entry for its tag, so the one unchecked
 * cast of every registry lives here; decoding guarantees the tag is registered.
 */
export const moduleFor = <M>(registry: Readonly<Record<string, unknown>>, spec: { readonly kind: string }): M =>
  registry[spec.kind] as M

/** The module registered for `kind`; an unknown one (a typo cast through `as any`) throws naming the valid kinds. */
export const registered = <R extends Readonly<Record<string, unknown>>>(registry: R, what: string, kind: string): R[keyof R] => {
  if (!Object.hasOwn(registry, kind)) throw new Error(`unknown ${what} kind ${JSON.stringify(kind)}; expected one of ${Object.keys(registry).join(", ")}`)
  return registry[kind] as R[keyof R]
}
