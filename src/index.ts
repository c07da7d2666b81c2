/** What experiment files import besides the model DSL. */
export { experiment, tinystories, type Experiment, type ExperimentOptions } from "./experiment/define.js"
export { adamw, lion, muon } from "./experiment/optimizer/spec.js"
export { prune } from "./experiment/prune/declare.js"
export {
  gradualMethod as gradual,
  headsMethod as heads,
  magnitudeMethod as magnitude,
  neuronsMethod as neurons,
  wandaMethod as wanda,
} from "./experiment/prune/methods/index.js"
export { runAt, runOf } from "./experiment/run-ref.js"
export { variant } from "./experiment/variant.js"
export { fromRun } from "./experiment/warm-start/index.js"
export { crossEntropy, distill } from "./experiment/objective/spec.js"
export { constant, cosine, linear, wsd } from "./schedule/index.js"
