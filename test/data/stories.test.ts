import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { readStories } from "../../src/data/stories.js"
import { sharedDataDir } from "../../src/data/paths.js"

const dir = mkdtempSync(join(tmpdir(), "stories-test-"))
const file = (name: string, content: string | Uint8Array): string => {
  const path = join(dir, name)
  writeFileSync(path, content)
  return path
}
const read = (path: string) => Effect.runPromise(readStories(path))
const failure = (path: string) => Effect.runPromise(Effect.flip(readStories(path)))

describe("TinyStories readers", () => {
  it("reads the development files with the story counts SOURCES.md gives", async () => {
    const counts = await Promise.all(["train.txt", "valid.txt", "train-extra.txt"].map((n) => read(join(sharedDataDir(), n))))
    expect(counts.map((s) => s.length)).toEqual([5312, 700, 1725])
    expect(counts[1]![0]!.startsWith("Spot. Spot saw the shiny car")).toBe(true)
  })

  it("splits .txt on <|endoftext|> lines, trims stories, skips V2's blank lines, keeps an unterminated last story", async () => {
    const path = file("v2.txt", "First story.\nSecond paragraph.  \n<|endoftext|>\n\n  Two.\n<|endoftext|>\n\n<|endoftext|>\nThree")
    expect(await read(path)).toEqual(["First story.\nSecond paragraph.", "Two.", "Three"])
  })

  it("streams a .txt larger than one read chunk, with a multi-byte character across the chunk edge", async () => {
    const filler = "x".repeat((1 << 20) - 1)
    const path = file("big.txt", `${filler}é tail\n<|endoftext|>\nnext\n<|endoftext|>\n`)
    expect(await read(path)).toEqual([`${filler}é tail`, "next"])
  })

  it("reads a JSON shard: an array of objects with a story field", async () => {
    const path = file("data00.json", JSON.stringify([{ story: " Once upon a time. ", summary: "s" }, { story: "Café ☕" }]))
    expect(await read(path)).toEqual(["Once upon a time.", "Café ☕"])
  })

  it("names a missing file", async () => {
    const e = await failure(join(dir, "nope.txt"))
    expect(e._tag).toBe("DataFileError")
    expect(e.message).toBe(`${join(dir, "nope.txt")}: no such file`)
  })

  it("rejects an empty file in either format", async () => {
    for (const name of ["empty.txt", "empty.json"]) {
      const e = await failure(file(name, ""))
      expect(e._tag).toBe("DataFormatError")
      expect(e.message).toMatch(/empty file/)
    }
  })

  it("rejects a text file without separators, JSON in a .txt, and binary content", async () => {
    expect((await failure(file("plain.txt", "just\nsome\ntext\n"))).message).toMatch(/plain.txt:1: no <\|endoftext\|> separator line in 3 lines/)
    expect((await failure(file("json.txt", '\n[{"story": "x"}]'))).message).toMatch(/json.txt:2: looks like JSON/)
    expect((await failure(file("bin.txt", "ok\n<|endoftext|>\na\0b\n"))).message).toMatch(/bin.txt:3: NUL byte/)
  })

  it("gives the byte offset and line of invalid UTF-8", async () => {
    const bytes = Buffer.concat([Buffer.from("one\n<|endoftext|>\nab"), Buffer.from([0xff]), Buffer.from("cd\n")])
    const e = await failure(file("bad.txt", bytes))
    // "one\n" (4) + "<|endoftext|>\n" (14) + "ab" (2): the 0xff is byte 20, on line 3.
    expect(e).toMatchObject({ _tag: "DataFormatError", line: 3, byteOffset: 20 })
    expect(e.message).toBe(`${join(dir, "bad.txt")}:3: invalid UTF-8 at byte offset 20`)
  })

  it("reports a file truncated inside a multi-byte character", async () => {
    // "a\n" then the first two bytes of "€" (e2 82 ac): the sequence starts at byte 2, line 2.
    const e = await failure(file("cut.txt", Buffer.from([0x61, 0x0a, 0xe2, 0x82])))
    expect(e).toMatchObject({ line: 2, byteOffset: 2 })
    expect(e.message).toMatch(/truncated inside a character/)
  })

  it("rejects an overlong encoding and a surrogate code point in UTF-8", async () => {
    expect(await failure(file("overlong.txt", Buffer.from([0x41, 0xc0, 0xaf])))).toMatchObject({ byteOffset: 1 })
    expect(await failure(file("surrogate.txt", Buffer.from([0x41, 0x42, 0xed, 0xa0, 0x80])))).toMatchObject({ byteOffset: 2 })
  })

  it("locates truncated or malformed JSON and items without a story", async () => {
    const cut = await failure(file("cut.json", '[{"story": "a"},\n{"story": "b'))
    expect(cut).toMatchObject({ _tag: "DataFormatError", line: 2 })
    expect(cut.message).toMatch(/cut.json:2: invalid JSON at byte offset/)
    const bad = await failure(file("bad.json", '[{"story": "a"},\n {"story": x}]'))
    expect(bad).toMatchObject({ line: 2, byteOffset: 28 })
    expect((await failure(file("obj.json", '{"story": "a"}'))).message).toMatch(/expected a JSON array/)
    expect((await failure(file("nostory.json", '[{"story": "a"}, {"text": "b"}]'))).message).toMatch(/item 1 has no string "story" field/)
    expect(await failure(file("latin1.json", Buffer.from([0x5b, 0x22, 0xe9, 0x22, 0x5d])))).toMatchObject({ byteOffset: 2, line: 1 })
  })
})
