/** What experiment files import besides the model DSL. */
export { adamw, experiment, tinystories, type Experiment } from "./experiment/define.js"
export { prune } from "./prune/declare.js"
export {
  gradualMethod as gradual,
  headsMethod as heads,
  magnitudeMethod as magnitude,
  neuronsMethod as neurons,
  wandaMethod as wanda,
} from "./prune/methods/index.js"
export { constant, cosine } from "./train/schedule.js"
