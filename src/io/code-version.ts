import { execFile } from "node:child_process"
import { Effect } from "effect"
import { repoRoot } from "./paths.js"

/**
 * Which code trained a run: the git commit and whether the files that shape training had
 * uncommitted changes. Only those paths count, so an edited README does not mark a run.
 * Outside a git checkout (a tarball, no git installed) the version is unknown.
 */
export interface CodeVersion {
  readonly commit: string
  readonly dirty: boolean
}

/** The files whose change can change a run's result. */
export const codePaths = ["dsl", "src", "native", "experiments", "binding.gyp", "package.json", "package-lock.json"] as const

const git = (args: ReadonlyArray<string>): Effect.Effect<{ code: number; stdout: string }> =>
  Effect.callback<{ code: number; stdout: string }>((resume) => {
    execFile("git", [...args], { cwd: repoRoot(), maxBuffer: 1 << 24 }, (error, stdout) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1
      resume(Effect.succeed({ code, stdout }))
    })
  })

export const codeVersion: Effect.Effect<CodeVersion | undefined> = Effect.gen(function* () {
  const head = yield* git(["rev-parse", "HEAD"])
  if (head.code !== 0) return undefined
  const status = yield* git(["status", "--porcelain", "--", ...codePaths])
  if (status.code !== 0) return undefined
  return { commit: head.stdout.trim(), dirty: status.stdout.trim() !== "" }
})

/**
 * Whether the code paths differ between `commit` and the working tree now (committed and
 * uncommitted changes alike); undefined when git cannot tell (e.g. the commit was made in a
 * clone whose history this one lacks).
 */
export const codeChangedSince = (commit: string): Effect.Effect<boolean | undefined> =>
  Effect.map(git(["diff", "--quiet", commit, "--", ...codePaths]), (r) => (r.code === 0 ? false : r.code === 1 ? true : undefined))
