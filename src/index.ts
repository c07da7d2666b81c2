/** What experiment files import besides the model DSL. */
export { adamw, experiment, tinystories, type Experiment } from "./experiment/define.js"
export { constant, cosine } from "./train/schedule.js"
