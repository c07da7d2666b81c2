/**
 * llama2.c's run.c as a peer: built from its directory (../shared/peers/llama2c; never copied
 * into the repository) with the build line of that directory's README, plus
 * bench/llama2c-driver.c, which runs run.c's own forward() on given token ids. Used by the
 * generation benchmark and by the test that run.c, given an exported model, picks our tokens.
 */
import { execFileSync, spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import { join } from "node:path"

export const defaultPeer = join(import.meta.dirname, "../../shared/peers/llama2c")

const compiler = (): string => process.env["CC"] ?? "gcc"

export const compilerAvailable = (): boolean => spawnSync(compiler(), ["--version"], { stdio: "ignore" }).status === 0

export interface Peer {
  /** run.c's own program. */
  readonly run: string
  /** bench/llama2c-driver.c around run.c. */
  readonly driver: string
}

/** Compiles run.c and the driver into `outDir` (the peer README's flags: -Ofast -fopenmp -march=native). */
export const buildPeer = (peer: string, outDir: string): Peer => {
  const source = join(peer, "run.c")
  if (!existsSync(source)) throw new Error(`${source} does not exist: --peer must name llama2.c's directory (see ../shared/peers/llama2c/README.md)`)
  const flags = ["-Ofast", "-fopenmp", "-march=native"]
  const run = join(outDir, "run")
  const driver = join(outDir, "llama2c-driver")
  execFileSync(compiler(), [...flags, source, "-lm", "-o", run], { stdio: ["ignore", "ignore", "inherit"] })
  execFileSync(compiler(), [...flags, `-I${peer}`, join(import.meta.dirname, "llama2c-driver.c"), "-lm", "-o", driver], { stdio: ["ignore", "ignore", "inherit"] })
  return { run, driver }
}

/** OpenMP threads; passive waiting, as the peer README advises on a busy machine. */
const ompEnv = (threads: number) => ({ ...process.env, OMP_NUM_THREADS: String(threads), OMP_WAIT_POLICY: "passive" })

export interface DriverRun {
  /** The greedy tokens, in run.c's ids. */
  readonly tokens: number[]
  readonly promptSeconds: number
  readonly decodeSeconds: number
}

/** run.c's forward over `prompt` (run.c ids), then `tokens` greedy tokens. */
export const runDriver = (peer: Peer, modelBin: string, prompt: readonly number[], tokens: number, threads: number): DriverRun => {
  const out = execFileSync(peer.driver, [modelBin, String(tokens), ...prompt.map(String)], { env: ompEnv(threads), encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] })
  return JSON.parse(out) as DriverRun
}

export interface StockRun {
  /** What run.c printed: the story text and a newline. */
  readonly stdout: Buffer
  /** run.c's own "achieved tok/s" figure. */
  readonly tokensPerSecond: number | undefined
}

/**
 * run.c itself, greedy (-t 0), for `steps` positions. With an empty prompt it encodes no text
 * (no dummy-prefix space) and starts from BOS alone, which the export maps to `<|endoftext|>`.
 */
export const runStock = (peer: Peer, dir: string, steps: number, threads: number, prompt = ""): StockRun => {
  const r = spawnSync(peer.run, [join(dir, "model.bin"), "-z", join(dir, "tokenizer.bin"), "-t", "0", "-n", String(steps), "-i", prompt], { env: ompEnv(threads) })
  if (r.status !== 0) throw new Error(`run.c exited with ${r.status ?? r.signal}: ${r.stderr.toString()}`)
  const reported = /achieved tok\/s: ([0-9.]+)/.exec(r.stderr.toString())
  return { stdout: r.stdout, tokensPerSecond: reported ? Number(reported[1]) : undefined }
}
