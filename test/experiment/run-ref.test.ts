import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { repoRoot } from "../../src/io/paths.js"
import { recipeOf, runAt, runDirOf, runOf } from "../../src/experiment/run-ref.js"
import { describeWarmStart, fromRun } from "../../src/experiment/warm-start/index.js"
import { sourceNameOf } from "../../src/experiment/warm-start/from-run.js"

describe("run references", () => {
  it("point where npm run exp puts an experiment's runs, or at a directory as given", () => {
    expect(runOf("base")).toEqual({ run: "base", experiment: "base" })
    expect(runDirOf(runOf("base"))).toBe(join(repoRoot(), "runs", "base"))
    expect(runOf("posenc", { variant: "rope", seed: 2 })).toEqual({ run: "posenc/rope/seed2", experiment: "posenc", variant: "rope", seed: 2 })
    expect(recipeOf(runOf("posenc", { variant: "rope", seed: 2 }))).toBe("experiment posenc, variant rope, seed 2")
    expect(runDirOf(runAt("/somewhere/teacher"))).toBe("/somewhere/teacher")
    expect(recipeOf(runAt("/somewhere/teacher"))).toBeUndefined()
  })

  it("map a student's blocks onto the source's and keep the other names", () => {
    expect(sourceNameOf("blocks.1.0.attention.wq", [0, 2])).toBe("blocks.2.0.attention.wq")
    expect(sourceNameOf("blocks.0.1.ffn.w_in", [3])).toBe("blocks.3.1.ffn.w_in")
    expect(sourceNameOf("embed.tokens", [0, 2])).toBe("embed.tokens")
    expect(sourceNameOf("blocks.1.0.attention.wq", undefined)).toBe("blocks.1.0.attention.wq")
    expect(describeWarmStart(fromRun(runOf("base"), { blocks: [0, 2] }))).toBe("from base, blocks 0, 2")
  })
})
