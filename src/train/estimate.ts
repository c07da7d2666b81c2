import { blockRuns, dimsOf, formatCount, paramCounts, type DecoderSpec, type Layer } from "../../dsl/index.js"
import { ffnHidden } from "../../dsl/ffn.js"
import type { Dims } from "../../dsl/kind.js"
import { activationModule } from "../../dsl/kinds/activation/index.js"
import { attentionModule } from "../../dsl/kinds/attention/index.js"
import { posencModule } from "../../dsl/kinds/posenc/index.js"
import { blockParams } from "../../dsl/params.js"
import { fusableKind } from "../attention/fused.js"
import { partsKind } from "../attention/fused-parts.js"
import { attentionFusion } from "../backend/fused.js"
import { posencCompute } from "../posenc/index.js"
import { formatBytes } from "../io/progress.js"
import { type OptimizerConfig, optimizerState } from "../experiment/optimizer/spec.js"

/**
 * The memory a training run needs, from its spec alone, before any tensor exists: float32
 * weights, the optimiser's state (AdamW's two moments, Lion's one), the gradients, and the
 * activations one optimiser step keeps for its backward pass at the configured batch and
 * context. A rough model, not a measurement: per layer it counts the tensors the forward pass
 * keeps for the backward pass (attention's projections and its B·H·T·K scores, with K the keys
 * a query actually computes for the kind; the FFN's hidden activations; norms and residual
 * sums), the largest transient tensors of one layer, and the B·T·V logits (their gradient
 * takes their buffer). The counts follow what the native backend holds with the training
 * loop's gradients (src/backend/gradients.ts)
 * (fused norms, activations and cross-entropy, and fused attention where the current backend
 * runs it: src/backend/fused.ts attentionFusion); test/train/estimate.test.ts compares the
 * estimate with measured peaks. Stock tfjs keeps more intermediates (composed norms and GELU).
 * With `checkpoint: "blocks"` the step holds one block's activations at a time and every block's input.
 */
export interface StepShape {
  /** Sequences per micro-batch. */
  readonly batch: number
  /** Micro-batches per optimiser step (an extra gradient buffer when above 1). */
  readonly accumulate: number
  /** Sequence lengths evaluated after training besides the context (forward passes only). */
  readonly evalLengths?: ReadonlyArray<number>
  /** The run's optimiser, whose state is counted. */
  readonly optimizer: OptimizerConfig
}

export interface MemoryEstimate {
  readonly parameters: number
  readonly weightBytes: number
  /** The optimiser's state, float32 (AdamW's first and second moments, Lion's momentum). */
  readonly optimizerBytes: number
  /** What that state is, for messages: "AdamW moments". */
  readonly optimizerState: string
  readonly gradientBytes: number
  /** What one optimiser step holds beyond weights and optimiser state besides the gradients. */
  readonly activationBytes: number
  readonly totalBytes: number
  /** The largest single tensor, in elements: the CPU backends hold each in one typed array. */
  readonly largestTensor: { readonly what: string; readonly elements: number }
}

const FLOAT = 4

interface Cost {
  /** Float32 values the forward pass keeps for the backward pass. */
  readonly values: number
  /** Values that live only while the layer runs, forward or backward (its scores, their gradients). */
  readonly transient: number
  readonly largest: { readonly what: string; readonly elements: number }
}

const larger = (a: Cost["largest"], b: Cost["largest"]) => (b.elements > a.elements ? b : a)
const sum = (costs: ReadonlyArray<Cost>): Cost => ({
  values: costs.reduce((s, c) => s + c.values, 0),
  transient: Math.max(0, ...costs.map((c) => c.transient)),
  largest: costs.map((c) => c.largest).reduce(larger, { what: "none", elements: 0 }),
})
/** Held at the step's peak: everything kept, plus the largest layer's transients. */
const peakOf = (c: Cost): number => c.values + c.transient

/** Keys one query's scores span: the kinds count their FLOPs as 4·keys·width (QKᵀ and AV). */
const keysPerQuery = (flops: number, width: number, context: number): number => Math.min(Math.max(1, flops / (4 * width)), 4 * context)

/**
 * What the tape saves per layer (src/backend/gradients.ts frees the rest as the step goes:
 * intermediate gradients once used, saved tensors once their op's backward ran), in tensors of
 * the size named, measured on the native backend.
 */
/** Where the backend's fused attention runs for this scheme: the kernel itself (dense, windows), and kinds as its parts. */
interface Fusion {
  readonly kernel: boolean
  readonly parts: boolean
}

const layerCost = (layer: Layer, dims: Dims, b: number, scoreHooks: boolean, fusion: Fusion): Cost => {
  // dims.context is the sequence length of the pass.
  const t = dims.context
  const n = b * t
  const d = dims.width
  switch (layer.op) {
    case "attention": {
      const module = attentionModule(layer)
      const a = module.params(layer, dims)["wq"]?.shape[1] ?? d
      const keys = keysPerQuery(module.flops(layer, dims), a, t)
      const scores = b * layer.heads * t * keys
      if (fusion.kernel && fusableKind(layer) && layer.dropout === 0) {
        // Fused (src/attention/fused.ts): q, k, v in per-head layouts, the kernel's output and
        // its merged heads, and each row's log-sum-exp; no scores, no rotated q and k (RoPE and
        // xPos rotate inside the kernel).
        return { values: 5 * n * a + b * layer.heads * t, transient: 4 * n * a, largest: { what: `attention projections (${n}×${a})`, elements: n * a } }
      }
      if (fusion.parts && partsKind(layer) && layer.dropout === 0) {
        // As parts (src/attention/fused-parts.ts): q, k, v (rotated too), their copies reordered or
        // gathered for a part, each part's output and log-sum-exp, the merged heads; no scores.
        return { values: (9 + (scoreHooks ? 2 : 0)) * n * a + 2 * b * layer.heads * t, transient: 4 * n * a, largest: { what: `attention projections (${n}×${a})`, elements: n * a } }
      }
      // q, k, v in per-head layouts (rotated ones too) and the merged heads (kinds that see
      // fewer keys than the context also gather keys and values into windows, columns or
      // compressed rows); the normalised scores (and a dropout mask); while the layer runs, the
      // raw and masked scores, or backward their gradients (full attention's causal softmax,
      // src/backend/fused.ts fusedCausalSoftmax, makes no masked copy and one gradient pass).
      const projections = 4 + (scoreHooks ? 2 : 0) + (keys < t ? 12 : 0)
      const scoreCopies = 1 + (layer.dropout > 0 ? 1 : 0)
      return {
        values: projections * n * a + scoreCopies * scores,
        transient: (layer.kind === "full" && t > 1 ? 1 : 2) * scores,
        largest: { what: `attention scores (${b}×${layer.heads}×${t}×${Math.round(keys)})`, elements: scores },
      }
    }
    case "ffn": {
      const h = ffnHidden(layer, d)
      const gated = activationModule(layer.activation).gated
      // The activation's input and output (ReLU's gradient reads only the output; gated: both
      // projections and the product too), a dropout mask; while the layer runs backward, the
      // hidden gradients.
      const hidden = (gated ? 4 : layer.activation.kind === "relu" ? 1 : 2) + (layer.dropout > 0 ? 1 : 0)
      return { values: hidden * n * h, transient: 2 * n * h, largest: { what: `FFN hidden activations (${n}×${h})`, elements: n * h } }
    }
    case "norm":
      // The input and the normalised output the next product reads.
      return { values: 2 * n * d, transient: 2 * n * d, largest: { what: `norm (${n}×${d})`, elements: n * d } }
    case "residual": {
      const body = sum(layer.body.map((l) => layerCost(l, dims, b, scoreHooks, fusion)))
      return { ...body, values: body.values + (layer.dropout > 0 ? 1 : 0) * n * d }
    }
  }
}

/**
 * The decoder's runs of equal blocks, its parameter count and its largest parameter, without
 * building a table of every block (a spec may ask for millions).
 */
const blockGroups = (spec: DecoderSpec) => {
  const dims = dimsOf(spec)
  const runs = blockRuns(spec.layers)
  const shapes: Array<[string, ReadonlyArray<number>]> = [
    ["embed.tokens", [spec.vocab, spec.width]],
    ...(spec.tied ? [] : [["head.weight", [spec.width, spec.vocab]] as [string, number[]]]),
    ...Object.entries(posencModule(spec.posenc).params(spec.posenc, dims)).map(([name, d]): [string, ReadonlyArray<number>] => [`posenc.${name}`, d.shape]),
    ...runs.flatMap((run) => blockParams(run.block, dims, run.from).map((p): [string, ReadonlyArray<number>] => [p.name, p.decl.shape])),
  ]
  const largest = shapes
    .map(([name, shape]) => ({ what: `parameter ${name} (${shape.join("×")})`, elements: shape.reduce((a, b) => a * b, 1) }))
    .reduce(larger, { what: "none", elements: 0 })
  return { groups: runs.map((run) => ({ block: run.block, repeats: run.count })), parameters: paramCounts(spec).total, largest }
}

/** What a training step (forward and backward) at batch b and length t holds. */
const stepCost = (spec: DecoderSpec, groups: ReturnType<typeof blockGroups>["groups"], b: number, t: number): Cost => {
  const dims = { ...dimsOf(spec), context: t }
  const n = b * t
  const posenc = posencCompute[spec.posenc.kind]
  const scoreHooks = posenc.hooks !== undefined
  // The scheme's hooks are closures (nothing reads a parameter until a bias is computed): what
  // they hold decides what the fused attention computes, as src/attention/fused*.ts decide it.
  const hooks = posenc.hooks?.(() => {
    throw new Error("estimate: no parameters")
  }, spec.posenc as never, dims)
  const fusion: Fusion = {
    kernel: attentionFusion() && (hooks?.scoreBias === undefined || hooks.distanceSlopes !== undefined),
    parts: attentionFusion() && hooks?.scoreBias === undefined,
  }
  const perBlock = groups.map(({ block, repeats }) => ({ cost: sum(block.layers.map((l) => layerCost(l, dims, b, scoreHooks, fusion))), repeats }))
  const costs = perBlock.map((g) => g.cost)
  // Checkpointed, the step keeps each block's input, and the gradient of the one the backward
  // pass is in (the training loop's gradients free each once used), and holds one block's
  // activations at a time while the backward pass recomputes it.
  const blocks: Cost[] =
    spec.checkpoint === "blocks"
      ? [
          { values: 0, transient: Math.max(...costs.map(peakOf)), largest: sum(costs).largest },
          { values: n * spec.width * (perBlock.reduce((s, g) => s + g.repeats, 0) + 1), transient: 0, largest: { what: "none", elements: 0 } },
        ]
      : perBlock.map(({ cost, repeats }) => ({ ...cost, values: cost.values * repeats }))
  const logits = n * spec.vocab
  const edges: Cost = {
    // The final norm's input and output (and positions added to the embeddings); the logits,
    // whose gradient takes their buffer on the native backend.
    values: (posenc.embed !== undefined ? 3 : 2) * n * spec.width + logits,
    transient: 0,
    largest: { what: `logits (${n}×${spec.vocab})`, elements: logits },
  }
  const all = sum(blocks)
  // A block's transients come and go before the logits exist (forward) or once they are freed (backward).
  return { values: all.values + edges.values, transient: Math.max(0, all.transient - logits), largest: larger(all.largest, edges.largest) }
}

export const estimateTraining = (spec: DecoderSpec, shape: StepShape): MemoryEstimate => {
  const { groups, parameters, largest } = blockGroups(spec)
  const b = shape.batch
  // Evaluating at a longer length keeps the batch's tokens (b·T) and only the forward pass: about half.
  const passes = [
    stepCost(spec, groups, b, spec.context),
    ...(shape.evalLengths ?? []).map((length) => {
      const c = stepCost(spec, groups, Math.max(1, Math.floor((b * spec.context) / length)), length)
      return { ...c, values: peakOf(c) / 2, transient: 0 }
    }),
  ]
  const step = { values: Math.max(...passes.map(peakOf)), largest: passes.map((p) => p.largest).reduce(larger) }
  const weights = FLOAT * parameters
  const state = optimizerState(shape.optimizer)
  const gradients = (shape.accumulate > 1 ? 2 : 1) * weights
  return {
    parameters,
    weightBytes: weights,
    optimizerBytes: state.perWeight * weights,
    optimizerState: state.what,
    gradientBytes: gradients,
    activationBytes: FLOAT * step.values,
    totalBytes: (1 + state.perWeight) * weights + gradients + FLOAT * step.values,
    largestTensor: larger(step.largest, largest),
  }
}

/** "12.7M", "24.0 billion", "8.00e+18": counts from small to absurd. */
const count = (n: number): string => (n < 1e9 ? formatCount(Math.round(n)) : n < 1e12 ? `${(n / 1e9).toPrecision(3)} billion` : n.toExponential(2))

/** TensorFlow.js's CPU backends keep each tensor in one typed array, at most 2³² elements long. */
const MAX_TENSOR_ELEMENTS = 2 ** 32

export interface MemoryLimit {
  readonly bytes: number
  /** Where the limit comes from, e.g. "--max-memory 8G" or "available memory (cgroup limit)". */
  readonly source: string
}

/** Why a run cannot start with this estimate, with the figures; undefined when it fits. */
export const memoryProblem = (e: MemoryEstimate, shape: { readonly batch: number; readonly context: number }, limit: MemoryLimit): string | undefined => {
  const figures =
    `  ${count(e.parameters)} parameters: ${formatBytes(e.weightBytes)} of weights, ${formatBytes(e.optimizerBytes)} of ${e.optimizerState}, ${formatBytes(e.gradientBytes)} of gradients\n` +
    `  activations of one step at batch ${shape.batch} × context ${shape.context}: about ${formatBytes(e.activationBytes)}`
  const advice = "Make the model, batch or context smaller"
  if (e.largestTensor.elements > MAX_TENSOR_ELEMENTS)
    return `the ${e.largestTensor.what} would hold ${count(e.largestTensor.elements)} values in one tensor; TensorFlow.js allows at most ${count(MAX_TENSOR_ELEMENTS)}.\n${figures}\n${advice}.`
  if (e.totalBytes > limit.bytes)
    return `training needs about ${formatBytes(e.totalBytes)}, more than the ${formatBytes(limit.bytes)} of ${limit.source}:\n${figures}\n${advice}, or raise the limit with --max-memory if the estimate is too cautious.`
  return undefined
}
