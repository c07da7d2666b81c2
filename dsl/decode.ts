import { Data, Effect, Result, Schema, SchemaIssue } from "effect"
import { FfnFields, ffnIssues } from "./ffn.js"
import { PositiveInt, PositiveNumber, Rate } from "./fields.js"
import type { Issue } from "./kind.js"
import { activationKinds } from "./kinds/activation/index.js"
import { headDimOf } from "./kinds/attention/fields.js"
import { attentionKinds, attentionModule, type AttentionSpec } from "./kinds/attention/index.js"
import { depthPolicies, policyModule } from "./kinds/depth/index.js"
import { normKinds, normModule } from "./kinds/norm/index.js"
import { posencKinds, posencModule } from "./kinds/posenc/index.js"
import { type BlockSpec, blocksOf, type DecoderSpec, type DepthSpec, dimsOf, type Layer, type Layers, type StackSpec } from "./nodes.js"
import { sharedParamIssues } from "./params.js"

/**
 * Decoding a model expression from JSON (a saved spec.json, or a spec built in code) and
 * checking its structural rules, all before any tensor exists. Decoding dispatches on the
 * `op` and `kind` tags itself so an error names the one schema that applies, not every
 * member of a union.
 */
export type Path = ReadonlyArray<string | number>

export class SpecError extends Data.TaggedError("SpecError")<{ readonly issues: ReadonlyArray<Issue> }> {
  override get message(): string {
    return this.issues.map((i) => `at ${formatPath(i.path)}: ${i.message}`).join("\n")
  }
}

export const formatPath = (path: Path): string => `[${path.map((p) => JSON.stringify(p)).join(",")}]`

type Decoded<T> = { readonly value?: T; readonly issues: ReadonlyArray<Issue> }

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

const withSchema = <T>(schema: Schema.Codec<T, any>, input: unknown, path: Path): Decoded<T> => {
  const result = Schema.decodeUnknownResult(schema)(input, { errors: "all", onExcessProperty: "error" })
  if (Result.isSuccess(result)) return { value: result.success, issues: [] }
  const issues = formatter(result.failure.issue).issues.map((i) => ({
    path: [...path, ...(i.path ?? []).map((k) => (typeof k === "number" ? k : String(k)))],
    message: i.message,
  }))
  return { issues }
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** Picks the kind module from `registry` by the value's `kind` field, then decodes with its schema. */
const byKind = <T>(
  registry: Readonly<Record<string, { readonly schema: Schema.Top }>>,
  what: string,
  input: unknown,
  path: Path,
): Decoded<T> => {
  const known = Object.keys(registry)
  if (!isRecord(input)) return { issues: [{ path, message: `expected a ${what} object, got ${JSON.stringify(input)}` }] }
  const kind = input["kind"]
  const module = typeof kind === "string" && Object.hasOwn(registry, kind) ? registry[kind] : undefined
  if (module === undefined) {
    const message = `unknown ${what} kind ${JSON.stringify(kind)}; expected one of ${known.join(", ")}`
    return { issues: [{ path: [...path, "kind"], message }] }
  }
  return withSchema(module.schema as unknown as Schema.Codec<T, any>, input, path)
}

/**
 * Decodes `input` with a schema for its scalar fields, handing the named nested fields to their own
 * decoders. A nested field is required unless `fields` also declares it (as an optional key).
 */
const shallow = <T>(
  fields: Schema.Struct.Fields,
  nested: Readonly<Record<string, (u: unknown, path: Path) => Decoded<unknown>>>,
  input: unknown,
  path: Path,
): Decoded<T> => {
  const all = { ...Object.fromEntries(Object.keys(nested).map((k) => [k, Schema.Unknown])), ...fields }
  const top = withSchema(Schema.Struct(all) as unknown as Schema.Codec<Record<string, unknown>, any>, input, path)
  if (!isRecord(input)) return { issues: top.issues }
  // Nested fields are decoded even when a scalar field failed, so every problem is reported at once.
  const value: Record<string, unknown> = { ...(top.value ?? input) }
  const issues: Issue[] = [...top.issues]
  for (const [key, decode] of Object.entries(nested)) {
    if (!(key in input)) continue
    const d = decode(value[key], [...path, key])
    issues.push(...d.issues)
    value[key] = d.value
  }
  return issues.length > 0 ? { issues } : { value: value as T, issues }
}

const list = <T>(item: (u: unknown, path: Path) => Decoded<T>, what = "layer") => (input: unknown, path: Path): Decoded<ReadonlyArray<T>> => {
  if (!Array.isArray(input)) return { issues: [{ path, message: `expected an array, got ${JSON.stringify(input)}` }] }
  if (input.length === 0) return { issues: [{ path, message: `expected at least one ${what}` }] }
  const items = input.map((u, i) => item(u, [...path, i]))
  const issues = items.flatMap((d) => d.issues)
  return issues.length > 0 ? { issues } : { value: items.map((d) => d.value as T), issues }
}

const layerOps = ["attention", "ffn", "norm", "residual"] as const

const decodeLayer = (input: unknown, path: Path): Decoded<Layer> => {
  if (!isRecord(input)) return { issues: [{ path, message: `expected a layer object, got ${JSON.stringify(input)}` }] }
  switch (input["op"]) {
    case "attention":
      return byKind(attentionKinds, "attention", input, path)
    case "norm":
      return byKind(normKinds, "norm", input, path)
    case "ffn":
      return shallow(FfnFields, { activation: (u, p) => byKind(activationKinds, "activation", u, p) }, input, path)
    case "residual":
      return shallow({ op: Schema.Literal("residual"), dropout: Rate }, { body: list(decodeLayer) }, input, path)
    default:
      return {
        issues: [{ path: [...path, "op"], message: `unknown layer op ${JSON.stringify(input["op"])}; expected one of ${layerOps.join(", ")}` }],
      }
  }
}

const decodeBlock = (input: unknown, path: Path): Decoded<BlockSpec> =>
  shallow({ op: Schema.Literal("block") }, { layers: list(decodeLayer) }, input, path)

const layersOps = ["depth", "stack"] as const

/** A depth policy, optional on either layers node. */
const policyField = { policy: Schema.optionalKey(Schema.Unknown) }
const decodePolicy = (u: unknown, p: Path) => byKind(depthPolicies, "depth policy", u, p)

const decodeLayers = (input: unknown, path: Path): Decoded<Layers> => {
  if (!isRecord(input)) return { issues: [{ path, message: `expected a depth or stack object, got ${JSON.stringify(input)}` }] }
  switch (input["op"]) {
    case "depth":
      return shallow<DepthSpec>({ op: Schema.Literal("depth"), n: PositiveInt, ...policyField }, { block: decodeBlock, policy: decodePolicy }, input, path)
    case "stack":
      return shallow<StackSpec>({ op: Schema.Literal("stack"), ...policyField }, { blocks: list(decodeBlock, "block"), policy: decodePolicy }, input, path)
    default:
      return { issues: [{ path: [...path, "op"], message: `unknown layers op ${JSON.stringify(input["op"])}; expected one of ${layersOps.join(", ")}` }] }
  }
}

const decodeShape = (input: unknown): Decoded<DecoderSpec> =>
  shallow(
    {
      op: Schema.Literal("decoder"),
      vocab: Schema.Int.check(Schema.isGreaterThanOrEqualTo(2)),
      width: PositiveInt,
      context: PositiveInt,
      tied: Schema.Boolean,
      dropout: Rate,
      allowNonCausal: Schema.optionalKey(Schema.Boolean),
      checkpoint: Schema.optionalKey(Schema.Literal("blocks")),
      softcap: Schema.optionalKey(PositiveNumber),
    },
    {
      posenc: (u, p) => byKind(posencKinds, "posenc", u, p),
      layers: decodeLayers,
      norm: (u, p) => byKind(normKinds, "norm", u, p),
    },
    input,
    [],
  )

/** The blocks to check, each with its path: a depth node's one block, or every block of a stack. */
const blocksToCheck = (layers: Layers): Array<[BlockSpec, Path]> =>
  layers.op === "depth" ? [[layers.block, ["layers", "block"]]] : layers.blocks.map((b, i): [BlockSpec, Path] => [b, ["layers", "blocks", i]])

/** Rules that span fields (heads divide width, options valid for the model's sizes). */
const structuralIssues = (spec: DecoderSpec): Issue[] => {
  const dims = dimsOf(spec)
  const at = (path: Path, issues: ReadonlyArray<Issue> | undefined): Issue[] =>
    (issues ?? []).map((i) => ({ path: [...path, ...i.path], message: i.message }))
  const posenc = posencModule(spec.posenc)
  // Position options that depend on the head count are reported at the posenc, naming the attention.
  const headIssues = (layer: AttentionSpec, path: Path): Issue[] =>
    at(["posenc"], posenc.checkHeads?.(spec.posenc, layer.heads, headDimOf(layer, dims.width))).map((i) => ({
      path: i.path,
      message: `${i.message} (attention at ${formatPath(path)})`,
    }))
  // A language model must not see the tokens it predicts.
  const causalIssues = (layer: AttentionSpec, path: Path): Issue[] =>
    spec.allowNonCausal || attentionModule(layer).causal(layer)
      ? []
      : [{ path: [...path, "kind"], message: `${layer.kind} is not causal: positions see later tokens, which a language model predicts; set allowNonCausal on the decoder to use it anyway` }]
  const layerIssues = (layer: Layer, path: Path): Issue[] => {
    switch (layer.op) {
      case "attention":
        return [...at(path, attentionModule(layer).check?.(layer, dims)), ...headIssues(layer, path), ...causalIssues(layer, path)]
      case "norm":
        return at(path, normModule(layer).check?.(layer, dims))
      case "ffn":
        return at(path, ffnIssues(layer))
      case "residual":
        return layer.body.flatMap((l, i) => layerIssues(l, [...path, "body", i]))
    }
  }
  return [
    ...at(["posenc"], posenc.check?.(spec.posenc, dims)),
    ...blocksToCheck(spec.layers).flatMap(([b, path]) => b.layers.flatMap((l, i) => layerIssues(l, [...path, "layers", i]))),
    ...(spec.layers.policy ? at(["layers", "policy"], policyModule(spec.layers.policy).check(spec.layers.policy, blocksOf(spec.layers), dims)) : []),
    ...at(["norm"], normModule(spec.norm).check?.(spec.norm, dims)),
  ]
}

/** Decodes and checks a model expression; every problem is reported, each with its path. */
export const decodeSpec = (input: unknown): Result.Result<DecoderSpec, SpecError> => {
  const decoded = decodeShape(input)
  if (decoded.value === undefined) return Result.fail(new SpecError({ issues: decoded.issues }))
  const structural = structuralIssues(decoded.value)
  // Parameter shapes are only meaningful once every node is valid.
  const issues = structural.length > 0 ? structural : sharedParamIssues(decoded.value)
  return issues.length > 0 ? Result.fail(new SpecError({ issues })) : Result.succeed(decoded.value)
}

export const decodeSpecEffect = (input: unknown): Effect.Effect<DecoderSpec, SpecError> => Effect.fromResult(decodeSpec(input))

/** Checks a spec built in code exactly as a JSON one would be, and throws a SpecError if it is invalid. */
export const validateSpec = (spec: DecoderSpec): DecoderSpec => {
  const result = decodeSpec(JSON.parse(JSON.stringify(spec)))
  if (Result.isFailure(result)) throw result.failure
  return spec
}
