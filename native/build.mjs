// Builds the native kernels addon (build/Release/tfjs_native.node) with node-gyp.
// Run by `npm ci`/`npm install` (the root "install" script) and `npm run build:native`.
// It never fails the install: without oneDNN the project runs on stock tfjs, and this
// prints once what to install for the fast path.
import { spawnSync } from "node:child_process"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const hint = "apt-get install -y libdnnl-dev && npm run build:native"
const skip = (why) => {
  console.warn(`tfjs native kernels not built: ${why}. The project falls back to stock tfjs; for the fast path run: ${hint}`)
  process.exit(0)
}

if (!["/usr/include/oneapi/dnnl/dnnl.hpp", "/usr/include/dnnl.hpp"].some((p) => existsSync(p)))
  skip("oneDNN headers (libdnnl-dev) are missing")

// node-gyp from devDependencies, else the copy npm bundles (npm exports its path).
let gyp
try {
  gyp = createRequire(path.join(root, "package.json")).resolve("node-gyp/bin/node-gyp.js")
} catch {
  gyp = process.env.npm_config_node_gyp
}
if (!gyp || !existsSync(gyp)) skip("node-gyp was not found")

// Headers of the running node when it ships them (Debian's nodejs does), so node-gyp
// needs no download.
const prefix = path.resolve(path.dirname(process.execPath), "..")
const nodedir = existsSync(path.join(prefix, "include", "node", "node_api.h")) ? [`--nodedir=${prefix}`] : []

const r = spawnSync(process.execPath, [gyp, "rebuild", ...nodedir], { cwd: root, stdio: "inherit" })
if (r.status !== 0) skip(`node-gyp exited with ${r.status ?? r.signal}`)

// -march=native code dies with SIGILL on a CPU that lacks the build CPU's instructions (a
// build folder carried to another machine); the loader compares against these flags first.
const cpuinfo = existsSync("/proc/cpuinfo") ? readFileSync("/proc/cpuinfo", "utf8") : ""
const flags = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1]?.trim().split(/\s+/) ?? []
writeFileSync(path.join(root, "build", "Release", "cpu-flags.json"), JSON.stringify({ flags }) + "\n")
