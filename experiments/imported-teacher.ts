import { attention, block, decoder, depth, ffn, norm, posenc } from "../dsl/index.js"
import { adamw, cosine, distill, experiment, runAt, tinystories, variant } from "../src/index.js"

/**
 * The import's worked example (docs/import.md): a model trained elsewhere teaches a
 * 1 M-parameter student. The teacher is whatever run `imports/base-hf` holds — in the example,
 * the base decoder exported with `npm run export -- runs/base --format hf` and brought back
 * with `npm run import`, so its bits per byte can be checked against the run it came from.
 * The student is GPT-2-shaped, width 128 and 2 blocks, on the teacher's own tokenizer (its
 * vocabulary is the tokenizer's 4,262 ids), from the data alone or distilled (forward KL at
 * T = 1, α = 0: step 7's best pure distillation), on equal tokens.
 */
const teacherDir = "imports/base-hf"

const student = decoder({
  vocab: 4262,
  width: 128,
  context: 256,
  posenc: posenc("learned"),
  layers: depth(2, block({ attention: attention("full", { heads: 4 }), ffn: ffn("relu", { mult: 4 }), norm: norm("layer") })),
  norm: norm("layer"),
  tied: true,
})

export default experiment({
  description: "Worked example of import: a 1 M-parameter student from the data alone or distilled from an imported teacher",
  models: {
    scratch: student,
    distilled: variant(student, { objective: distill({ teacher: runAt(teacherDir), temperature: 1, alpha: 0 }) }),
  },
  data: tinystories({ tokenizer: { run: teacherDir } }),
  budget: { tokens: 524_288 },
  batch: 16,
  optimizer: adamw({ lr: cosine({ peak: 3e-3, warmup: 32, floor: 3e-4 }), weightDecay: 0.1 }),
  eval: { every: 250, tokens: 131_072 },
  checkpoint: { every: 100 },
  seeds: [1, 2],
})
