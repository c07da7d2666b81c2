import { experiment, variant } from "../src/index.js"
import { records, recipe } from "./speedrun-records.js"

/**
 * How many tokens the speedrun's goal, val bpb 1.00, takes with the current record's model and
 * optimiser, its schedules stretched to a 2.4 M-token budget (warmup-stable-decay is sized by
 * the budget), stopping at the first evaluation at or below 1.00. Tokens and FLOPs to the goal
 * do not depend on the machine; its time on a machine is those tokens at that machine's speed.
 */
const [name, { model, training }] = Object.entries(records).at(-1)!

export default experiment({
  ...recipe,
  description: `TinyStories speedrun: tokens to val bpb 1.00 with the current record's recipe (${name}) over a 2.4 M-token schedule`,
  models: { [`${name}-2.4M`]: variant(model, { optimizer: training!.optimizer!, budget: { tokens: 2_400_256, bpb: 1.0 } }) },
  seeds: [1],
})
