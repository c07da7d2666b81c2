import { afterEach, expect, it, vi } from "vitest"
import { main } from "../../bench/attention.js"
import { describeNative } from "../backend/native-suite.js"

/** The JSON lines main prints. */
const linesOf = async (argv: string[]): Promise<Array<Record<string, unknown>>> => {
  const log = vi.spyOn(console, "log").mockImplementation(() => {})
  try {
    await main(argv)
    return log.mock.calls.map(([line]) => JSON.parse(String(line)) as Record<string, unknown>)
  } finally {
    log.mockRestore()
  }
}

describeNative("the attention benchmark's profile", () => {
  afterEach(() => {
    delete process.env["TFJS_NATIVE_FUSED_ATTENTION"]
  })

  it("--profile times each kernel per run: the fused kernel's two for a kind that runs in it, the composed ops' softmax otherwise", async () => {
    const argv = ["--backend", "native", "--kinds", "sparse-fixed", "--contexts", "256", "--reps", "1", "--profile"]
    const kernelsOf = (lines: Array<Record<string, unknown>>) => new Map(lines.filter((l) => l["bench"] === "attention-profile").map((l) => [l["kernel"] as string, l]))
    const fused = kernelsOf(await linesOf(argv))
    // Two parts (each query's block, the summaries): two calls each way per run.
    expect(fused.get("FusedAttention")?.["callsPerRun"]).toBe(2)
    expect(fused.get("FusedAttentionGrad")?.["callsPerRun"]).toBe(2)
    expect(fused.has("Softmax")).toBe(false)
    for (const l of fused.values()) expect(l["msPerRun"]).toBeGreaterThan(0)
    process.env["TFJS_NATIVE_FUSED_ATTENTION"] = "0"
    const composed = kernelsOf(await linesOf(argv))
    expect(composed.has("FusedAttention")).toBe(false)
    expect(composed.has("Softmax")).toBe(true)
  })
})
