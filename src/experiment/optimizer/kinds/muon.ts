import { Schema } from "effect"
import type { NamedParam } from "../../../../dsl/params.js"
import { describeSchedule, LrSchedule } from "../../../schedule/index.js"
import { adamwDefaults, adamwFields, type AdamWParts, Unit } from "./adamw.js"
import { commonFields, type OptimizerDescription } from "./description.js"

/**
 * Muon (src/optimizer/muon.ts): Newton–Schulz-orthogonalised momentum for the blocks' hidden
 * matrices, at the run's rate `lr` and with decoupled weight decay `weightDecay`; AdamW with
 * its own rate, betas and decay for every other parameter. Clipping and `decayAll` apply to both.
 */
const schema = Schema.Struct({
  kind: Schema.Literal("muon"),
  ...commonFields,
  momentum: Unit,
  nesterov: Schema.Boolean,
  /** Newton–Schulz iterations. */
  steps: Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)),
  adamw: Schema.Struct({ lr: LrSchedule, weightDecay: commonFields.weightDecay, ...adamwFields }),
})
export type MuonOptions = typeof schema.Type

/**
 * Muon's parameters: 2-D weights inside the blocks (attention and FFN projections). Embeddings,
 * position tables, norm gains, biases, Linformer's sequence projections, output heads (the LM
 * head, exit heads) and matrices of one row or column (routers) go to AdamW, as the reference
 * prescribes for everything but hidden layers.
 */
export const isHiddenMatrix = ({ name, decl }: NamedParam): boolean =>
  name.startsWith("blocks.") && decl.shape.length === 2 && decl.shape.every((d) => d > 1) && !decl.embedding && !decl.alongSequence && !decl.output

/**
 * One Newton–Schulz step on an m×n update (m ≤ n: a tall one is transposed first) is three
 * products: A = X·Xᵀ (2m²n), A² (2m³) and (b·A + c·A²)·X (2m²n).
 */
const newtonSchulzFlops = (steps: number, [rows, cols]: readonly number[]): number => {
  const m = Math.min(rows!, cols!)
  const n = Math.max(rows!, cols!)
  return steps * (4 * m * m * n + 2 * m * m * m)
}

export const muonOptimizer: OptimizerDescription<MuonOptions> & {
  readonly make: (o: {
    lr: LrSchedule
    momentum?: number
    nesterov?: boolean
    steps?: number
    weightDecay?: number
    clip?: number
    decayAll?: boolean
    adamw: AdamWParts & { lr: LrSchedule }
  }) => MuonOptions
} = {
  schema,
  // The reference's defaults (momentum 0.95, Nesterov, 5 steps, no decay); the AdamW part's are adamw()'s.
  make: (o) => ({
    kind: "muon",
    lr: o.lr,
    weightDecay: o.weightDecay ?? 0,
    clip: o.clip ?? 1,
    decayAll: o.decayAll ?? false,
    momentum: o.momentum ?? 0.95,
    nesterov: o.nesterov ?? true,
    steps: o.steps ?? 5,
    adamw: { lr: o.adamw.lr, ...adamwDefaults(o.adamw) },
  }),
  // Two for the weights AdamW takes; the matrices' one momentum is not told apart here.
  state: () => ({ perWeight: 2, what: "Muon momentum and AdamW moments" }),
  updateFlops: (o, params) => params.filter(isHiddenMatrix).reduce((sum, p) => sum + newtonSchulzFlops(o.steps, p.decl.shape), 0),
  label: (o) =>
    `muon(momentum ${o.momentum}${o.nesterov ? " nesterov" : ""}, ${o.steps} steps, wd ${o.weightDecay}, clip ${o.clip}), lr ${describeSchedule(o.lr)}; ` +
    `adamw(β=${o.adamw.beta1},${o.adamw.beta2}, wd ${o.adamw.weightDecay}), lr ${describeSchedule(o.adamw.lr)}`,
}
