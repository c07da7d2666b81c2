import { keepBlocks, override } from "../dsl/index.js"
import type { Objective } from "../src/experiment/objective/spec.js"
import { adamw, cosine, distill, experiment, fromRun, neurons, prune, runOf, tinystories, variant } from "../src/index.js"
import { baseModel } from "./base.js"

/**
 * Research plan step 7: at the same student size and token budget, does learning from the
 * base decoder's predictions beat learning from the data alone, by how much, with which
 * temperature, divergence and initialisation, and at what cost per step? The teacher is the
 * base experiment's run (runs/base; `npm run exp distillation` trains it first when missing).
 *
 * Students: the base decoder at width 128 (4 layers, 793 k non-embedding parameters), from
 * scratch and distilled at T ∈ {1, 2, 4}, α ∈ {0, 0.5}, forward and reverse KL, and once with
 * hidden-state matching of blocks 1 and 3 (through a learned 128 → 256 projection); and the
 * teacher's blocks 0 and 2 (width 256, 2 layers, 1.58 M), from scratch, initialised from
 * the teacher's blocks (DistilBERT), and initialised and distilled; and the same size made
 * narrower instead of shallower (Minitron's prune-then-distill): the teacher with three
 * quarters of its FFN neurons removed by Taylor score (1.58 M), then trained on the same
 * tokens with cross-entropy or distilled. Equal token budgets.
 */
const teacher = runOf("base")
const student = override(baseModel, { width: 128 })
const halfTeacher = keepBlocks(baseModel, (i) => i % 2 === 0)
const teacherBlocks = fromRun(teacher, { blocks: [0, 2] })
const tokens = 524_288
/** The teacher without 3/4 of its FFN neurons, then `tokens` of training with `objective`. */
const narrowed = (objective?: Objective) => prune({ source: "base", method: neurons({ remove: 0.75, by: "taylor" }), finetune: { tokens, ...(objective ? { objective } : {}) } })

const kd = Object.fromEntries(
  (["forward-kl", "reverse-kl"] as const).flatMap((divergence) =>
    [1, 2, 4].flatMap((temperature) =>
      [0, 0.5].map((alpha) => [`kd-${divergence === "forward-kl" ? "fkl" : "rkl"}-T${temperature}-a${alpha}`, variant(student, { objective: distill({ teacher, temperature, alpha, divergence }) })]),
    ),
  ),
)

export default experiment({
  description: "Distillation from the base decoder: 0.8 M students, scratch vs KD over T, α and KL direction, hidden states, teacher-initialised 2-layer students",
  models: {
    scratch: student,
    ...kd,
    "kd-fkl-T2-a0.5-hidden": variant(student, {
      objective: distill({ teacher, temperature: 2, alpha: 0.5, hidden: { pairs: [[1, 1], [3, 3]], loss: "cosine", weight: 1 } }),
    }),
    "2l-scratch": halfTeacher,
    "2l-teacher-init": variant(halfTeacher, { init: teacherBlocks }),
    "2l-teacher-init-kd-fkl-T2-a0.5": variant(halfTeacher, { init: teacherBlocks, objective: distill({ teacher, temperature: 2, alpha: 0.5 }) }),
    "pruned-ffn-75": narrowed(),
    "pruned-ffn-75-kd-fkl-T2-a0.5": narrowed(distill({ teacher, temperature: 2, alpha: 0.5 })),
  },
  data: tinystories({ tokenizer: { bpe: 4096 } }),
  budget: { tokens },
  batch: 16,
  optimizer: adamw({ lr: cosine({ peak: 3e-3, warmup: 32, floor: 3e-4 }), weightDecay: 0.1 }),
  eval: { every: 250, tokens: 131_072 },
  checkpoint: { every: 100 },
  seeds: [1, 2],
})
