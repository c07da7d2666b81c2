import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { resolveDataset } from "../../src/data/dataset.js"
import { sharedDataDir } from "../../src/data/paths.js"

const makeDir = (names: string[]): string => {
  const dir = mkdtempSync(join(tmpdir(), "dataset-test-"))
  for (const n of names) writeFileSync(join(dir, n), "story\n<|endoftext|>\n")
  return dir
}
const savedEnv = process.env["TINYSTORIES_DIR"]

afterEach(() => {
  if (savedEnv === undefined) delete process.env["TINYSTORIES_DIR"]
  else process.env["TINYSTORIES_DIR"] = savedEnv
})

describe("resolveDataset", () => {
  it("defaults to the shared development copy, train.txt only unless extra is asked for", async () => {
    delete process.env["TINYSTORIES_DIR"]
    const shared = sharedDataDir()
    expect(await Effect.runPromise(resolveDataset())).toEqual({
      dir: shared,
      source: "shared",
      train: [join(shared, "train.txt")],
      valid: join(shared, "valid.txt"),
    })
    const extra = await Effect.runPromise(resolveDataset({ extra: true }))
    expect(extra.train).toEqual([join(shared, "train.txt"), join(shared, "train-extra.txt")])
  })

  it("explicit dir beats TINYSTORIES_DIR, which beats the shared copy", async () => {
    const envDir = makeDir(["train.txt", "valid.txt"])
    const explicit = makeDir(["TinyStories-train.txt", "TinyStories-valid.txt"])
    process.env["TINYSTORIES_DIR"] = envDir
    expect(await Effect.runPromise(resolveDataset())).toMatchObject({ dir: envDir, source: "env", valid: join(envDir, "valid.txt") })
    expect(await Effect.runPromise(resolveDataset({ dir: explicit }))).toMatchObject({
      dir: explicit,
      source: "explicit",
      train: [join(explicit, "TinyStories-train.txt")],
      valid: join(explicit, "TinyStories-valid.txt"),
    })
  })

  it("never falls back from a pinned directory that lacks the files", async () => {
    const dir = makeDir(["train.txt", "valid.txt"])
    const e = await Effect.runPromise(Effect.flip(resolveDataset({ dir, extra: true })))
    expect(e._tag).toBe("DataFileError")
    expect(e.message).toBe(
      `${dir} holds neither {train.txt, train-extra.txt, valid.txt} nor {TinyStories-train.txt, TinyStoriesV2-GPT4-train.txt, TinyStories-valid.txt}`,
    )
    const missing = join(dir, "absent")
    expect((await Effect.runPromise(Effect.flip(resolveDataset({ dir: missing })))).path).toBe(missing)
  })
})
