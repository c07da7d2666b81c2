export { compile, DecodeCache, type Batch, type ForwardOptions, type Model, type ParamValues } from "./compile.js"
export { initParams, initValues, type Params } from "./init.js"
export { bitsPerByte, crossEntropy } from "./loss.js"
