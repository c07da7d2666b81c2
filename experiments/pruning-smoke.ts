import { adamw, constant, experiment, gradual, heads, magnitude, neurons, prune, tinystories, wanda } from "../src/index.js"

/**
 * A minute-long end-to-end check of pruning: every method on the smoke run (trained first
 * when runs/smoke does not exist), one-shot or with a short fine-tune.
 */
const source = "smoke"
const finetune = { steps: 12, optimizer: adamw({ lr: constant(1e-3) }) }

export default experiment({
  description: "Prunes the smoke run with every method: checks pruning, masks, materialisation and fine-tunes end to end",
  models: {
    "magnitude-global-50": prune({ source, method: magnitude({ scope: "global", sparsity: 0.5 }) }),
    "magnitude-layer-50-ft": prune({ source, method: magnitude({ scope: "layer", sparsity: 0.5 }), finetune }),
    "gradual-75": prune({ source, method: gradual({ sparsity: 0.75, every: 2 }), finetune }),
    "wanda-50": prune({ source, method: wanda({ sparsity: 0.5, calibration: { batches: 2 } }) }),
    "heads-importance-50": prune({ source, method: heads({ remove: 0.5, by: "importance", calibration: { batches: 2 } }), finetune }),
    "heads-random-50": prune({ source, method: heads({ remove: 0.5, by: "random" }) }),
    "neurons-taylor-50": prune({ source, method: neurons({ remove: 0.5, by: "taylor", calibration: { batches: 2 } }), finetune }),
    "neurons-activation-50": prune({ source, method: neurons({ remove: 0.5, by: "activation", calibration: { batches: 2 } }) }),
    "neurons-random-50": prune({ source, method: neurons({ remove: 0.5, by: "random" }) }),
  },
  data: tinystories({ tokenizer: { bpe: 512 } }),
  budget: { steps: 12 },
  batch: 8,
  optimizer: adamw({ lr: constant(1e-3) }),
  eval: { every: 1000, tokens: 4096 },
  checkpoint: { every: 4 },
  sample: { tokens: 24 },
  seeds: [1],
})
