import { experiment } from "../src/index.js"
import { records, recipe, target } from "./speedrun-records.js"

/** The speedrun's current record (the last of experiments/speedrun-records.ts), alone: `npm run exp speedrun -- --seed 1` for one seed. */
const [name, current] = Object.entries(records).at(-1)!

export default experiment({
  ...recipe,
  description: `TinyStories speedrun, current record (${name}): time to val bpb ${target} on two CPU cores`,
  models: { [name]: current },
  seeds: [1, 2, 3],
})
