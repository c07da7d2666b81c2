import { existsSync, readdirSync, readFileSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"
import { describe, expect, it } from "vitest"

/**
 * The folders under src/ are layers, lowest first: a folder imports only from its own layer or
 * lower ones, so nothing below can load what sits above it. A new folder has to be placed here.
 * `index.ts` is src/index.ts, what experiment files import: it belongs with the run language.
 */
const layers: ReadonlyArray<ReadonlyArray<string>> = [
  ["errors", "random"],
  ["io"],
  ["schedule", "experiment", "index.ts"],
  ["tokenizer", "data"],
  ["backend"],
  ["activation", "norm", "posenc"],
  ["attention"],
  ["ffn", "depth"],
  ["decode"],
  ["model"],
  ["eval", "objective", "optimizer"],
  ["train"],
  ["prune"],
  ["orchestration"],
  ["export", "import", "report"],
  ["cli"],
]

/** The languages (the model's and the run's) are data: nothing they load, however indirectly, may be tensor code. */
const languages = ["dsl", "src/schedule", "src/experiment", "src/index.ts"]

const root = resolve(import.meta.dirname, "..")

/** An import or re-export with a `from`; its clause holds only names, braces, commas and `* as`. */
const statement = /^[ \t]*(import|export)\s+(type\s+)?([\w\s{},*$]*?)\s*from\s*"([^"]+)"|^[ \t]*import\s*"([^"]+)"/gm

/** Whether an import loads nothing at run time: `import type`, or braces naming only `type X`. */
const typeOnly = (isType: boolean, clause: string): boolean => {
  if (isType) return true
  const braces = /^\{([^}]*)\}$/.exec(clause.trim())
  if (braces === null) return false
  const names = braces[1]!.split(",").map((n) => n.trim()).filter((n) => n !== "")
  return names.length > 0 && names.every((n) => n.startsWith("type "))
}

interface Import {
  /** A repository-relative path for a relative import, the package's name otherwise. */
  readonly target: string
  readonly typeOnly: boolean
}

const resolveImport = (from: string, specifier: string): string => {
  if (!specifier.startsWith(".")) return specifier
  const base = resolve(root, dirname(from), specifier)
  const candidates = [base.replace(/\.js$/, ".ts"), base, join(base, "index.ts")]
  return relative(root, candidates.find((c) => existsSync(c)) ?? base)
}

const importsOf = (file: string): Import[] =>
  [...readFileSync(join(root, file), "utf8").matchAll(statement)].map((m) => ({
    target: resolveImport(file, m[4] ?? m[5]!),
    typeOnly: m[5] === undefined && typeOnly(m[2] !== undefined, m[3]!),
  }))

const tsFiles = (dir: string): string[] =>
  readdirSync(join(root, dir), { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts"))
    .map((f) => join(dir, f))
    .sort()

const files = [...tsFiles("src"), ...tsFiles("dsl")]
const graph = new Map(files.map((f) => [f, importsOf(f)]))

/** The files a file loads at run time, within the repository. */
const loads = (file: string): string[] => (graph.get(file) ?? []).filter((i) => !i.typeOnly && graph.has(i.target)).map((i) => i.target)

/** The folder under src/ a file of src/ belongs to (src/index.ts is its own). */
const folderOf = (file: string): string => relative("src", file).split("/")[0]!

const layerOf = new Map(layers.flatMap((names, i) => names.map((n) => [n, i] as const)))

describe("the layers of src/", () => {
  it("reads the import graph: value imports are edges, type-only ones are not", () => {
    expect(loads("src/train/session.ts")).toContain("src/model/compile.ts")
    expect(loads("src/model/index.ts")).toContain("src/model/compile.ts")
    expect(graph.get("src/train/session.ts")!.map((i) => i.target)).toContain("@tensorflow/tfjs")
    // `import type { DecodeCache }`: the depth policies name the model's cache without loading the model.
    expect(graph.get("src/depth/compute.ts")!.map((i) => i.target)).toContain("src/model/compile.ts")
    expect(loads("src/depth/compute.ts")).not.toContain("src/model/compile.ts")
  })

  it("places every folder under src/ in a layer", () => {
    const folders = [...new Set(files.filter((f) => f.startsWith("src/")).map(folderOf))]
    expect(folders.filter((f) => !layerOf.has(f)), "folders missing from the layer list in test/layers.test.ts").toEqual([])
  })

  it("has no import cycle among files", () => {
    const done = new Set<string>()
    const path: string[] = []
    const cycles: string[] = []
    const visit = (file: string) => {
      const at = path.indexOf(file)
      if (at >= 0) {
        cycles.push([...path.slice(at), file].join(" → "))
        return
      }
      if (done.has(file)) return
      path.push(file)
      for (const next of loads(file)) visit(next)
      path.pop()
      done.add(file)
    }
    for (const file of files) visit(file)
    expect(cycles).toEqual([])
  })

  it("imports only from a folder's own layer or lower ones", () => {
    const upward = files
      .filter((f) => f.startsWith("src/"))
      .flatMap((f) =>
        loads(f)
          .filter((t) => t.startsWith("src/") && (layerOf.get(folderOf(t)) ?? -1) > (layerOf.get(folderOf(f)) ?? Infinity))
          .map((t) => `${f} → ${t} (${folderOf(f)} is below ${folderOf(t)})`),
      )
    expect(upward).toEqual([])
  })

  it("the languages (dsl/, the run's in src/) load no tensor library or native backend, even indirectly", () => {
    const tensor = (target: string) => target.startsWith("@tensorflow/") || target.startsWith("src/backend/")
    const offending: string[] = []
    for (const start of files.filter((f) => languages.some((l) => f === l || f.startsWith(`${l}/`)))) {
      // Breadth first, so each file is reached by its shortest chain of imports.
      const via = new Map<string, string>([[start, ""]])
      const queue = [start]
      while (queue.length > 0) {
        const file = queue.shift()!
        for (const i of graph.get(file) ?? []) {
          if (i.typeOnly || via.has(i.target)) continue
          via.set(i.target, file)
          if (tensor(i.target)) {
            const chain = [i.target]
            for (let f = file; f !== ""; f = via.get(f)!) chain.unshift(f)
            offending.push(chain.join(" → "))
          } else if (graph.has(i.target)) queue.push(i.target)
        }
      }
    }
    expect(offending).toEqual([])
  })
})
