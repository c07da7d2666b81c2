/**
 * `npm run bench -- <name> [flags]`: each benchmark prints its figures as JSON lines.
 * A benchmark is one module under bench/ registered here by name.
 */
const benches: Record<string, () => Promise<{ main: (argv: string[]) => Promise<void> }>> = {
  attention: () => import("./attention.js"),
  distill: () => import("./distill.js"),
  tokenizer: () => import("./tokenizer.js"),
  train: () => import("./train.js"),
}

const [name, ...rest] = process.argv.slice(2)
const load = name === undefined ? undefined : benches[name]
if (load === undefined) {
  console.error(`usage: npm run bench -- <${Object.keys(benches).join(" | ")}> [flags]`)
  process.exit(2)
}
await (await load()).main(rest)
