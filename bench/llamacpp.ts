/**
 * llama.cpp as a generation peer, through node-llama-cpp's prebuilt CPU binaries (a pinned
 * devDependency): the model exported to GGUF (f32, and q8_0, the peer of int8 decoding), then
 * per measurement a fresh process that loads it with N threads, evaluates the prompt ids and
 * picks `tokens` tokens greedily, timed as bench/llama2c-driver.c times run.c: the prompt's
 * forward passes (here with the first pick), then the remaining steps. Keys and values are
 * kept in float32 without flash attention, the arithmetic of our decoding, so the greedy
 * tokens can be compared. node-llama-cpp adds its own per-call cost (an async call into
 * llama.cpp per token) to llama.cpp's.
 */
import { spawnSync } from "node:child_process"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import type { DecoderSpec } from "../dsl/index.js"
import type { Weights as Precision } from "../src/decode/weights.js"
import { toGguf } from "../src/export/gguf.js"
import type { Weights } from "../src/export/weights.js"
import type { Tokenizer } from "../src/tokenizer/tokenizer.js"

/** The GGUF types the peer runs: f32 against our float32 decoding, q8_0 against int8 weights. */
export const peerTypes = ["f32", "q8_0"] as const
export type PeerType = (typeof peerTypes)[number]

/** Our decoding whose arithmetic each type's matches (src/decode/weights.ts's int8 is Q8_0). */
export const counterpart: Readonly<Record<PeerType, Precision>> = { f32: "fp32", q8_0: "int8" }

export interface LlamaCppRun {
  readonly tokens: number[]
  readonly promptSeconds: number
  readonly decodeSeconds: number
}

interface Job {
  readonly modelPath: string
  readonly prompt: readonly number[]
  readonly tokens: number
  readonly threads: number
}

/** Writes `<work>/<name>-<type>.gguf` for each type; undefined when llama.cpp's llama architecture cannot express the model. */
export const exportForLlamaCpp = (name: string, spec: DecoderSpec, weights: Weights, tokenizer: Tokenizer, work: string): Record<PeerType, string> | undefined => {
  const paths = {} as Record<PeerType, string>
  for (const type of peerTypes) {
    const result = toGguf(spec, weights, tokenizer, {}, { type })
    if (!result.ok) return undefined
    paths[type] = join(work, `${name}-${type}.gguf`)
    writeFileSync(paths[type], result.files[0]!.data)
  }
  return paths
}

/** One measurement in a fresh process (as ours and run.c's are). */
export const runLlamaCpp = (modelPath: string, prompt: readonly number[], tokens: number, threads: number): LlamaCppRun => {
  const job: Job = { modelPath, prompt, tokens, threads }
  const r = spawnSync(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), JSON.stringify(job)], { encoding: "utf8", maxBuffer: 1 << 24 })
  if (r.status !== 0) throw new Error(`the llama.cpp child failed (${r.status ?? r.signal}):\n${r.stderr}`)
  return JSON.parse(r.stdout.trim().split("\n").at(-1)!) as LlamaCppRun
}

const measure = async (job: Job): Promise<LlamaCppRun> => {
  const { getLlama, LlamaLogLevel } = await import("node-llama-cpp")
  type Item = import("node-llama-cpp").ControlledEvaluateInputItem
  type Token = import("node-llama-cpp").Token
  const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error })
  const model = await llama.loadModel({ modelPath: job.modelPath })
  const context = await model.createContext({
    contextSize: model.trainContextSize,
    threads: job.threads,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
    flashAttention: false,
  })
  const sequence = context.getSequence()
  const pick = (t: number): Item => [t as Token, { generateNext: { token: true } }]
  // Untimed: the first step pages the mapped weights in, as the run.c driver's untimed forward does.
  await sequence.controlledEvaluate([pick(job.prompt[0]!)])
  await sequence.clearHistory()
  const t0 = performance.now()
  const prompt: Item[] = job.prompt.map((t, i) => (i === job.prompt.length - 1 ? pick(t) : (t as Token)))
  const out = [(await sequence.controlledEvaluate(prompt))[prompt.length - 1]!.next.token!]
  const t1 = performance.now()
  while (out.length < job.tokens) out.push((await sequence.controlledEvaluate([pick(out.at(-1)!)]))[0]!.next.token!)
  const t2 = performance.now()
  await model.dispose()
  await llama.dispose()
  return { tokens: out, promptSeconds: (t1 - t0) / 1000, decodeSeconds: (t2 - t1) / 1000 }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(JSON.stringify(await measure(JSON.parse(process.argv[2]!) as Job)))
