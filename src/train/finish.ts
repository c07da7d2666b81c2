import { Effect, Path } from "effect"
import { generate } from "../eval/generate.js"
import { evaluate } from "../eval/evaluate.js"
import { evalLabel, evalTextOf, type RunSpec } from "../experiment/define.js"
import { machineName, recordFinishedRun } from "./ledger.js"
import type { Summary } from "../experiment/summary.js"
import { writeFileAtomic } from "../io/atomic-write.js"
import { Rng } from "../random/rng.js"
import type { RunData } from "./run-data.js"
import { longerLengths, RunError, type RunOptions } from "./run-options.js"
import type { Session } from "./session.js"
import { evaluateNow, type Trained } from "./steps.js"

/**
 * The last phase of a run: its final checkpoint, evaluation (at longer lengths too, where the
 * position scheme reaches), a sample story, summary.json (with what its start adds) and its
 * ledger record.
 */

/** A finished run's ledger record, written unless the ledger has it (it may have failed to write before); whether it was written. */
export const recordRun = (run: RunSpec, summary: Summary, data: RunData, options: RunOptions) =>
  options.ledger === undefined
    ? Effect.succeed(false)
    : recordFinishedRun(run, summary, { dir: options.out, dataHash: data.dataHash, ledger: options.ledger }).pipe(
        Effect.mapError(
          (e) =>
            new RunError({
              problem: `${options.out} finished (summary.json is written), but its ledger record could not be written: ${e.message}\nRun the same command again to record it: ${options.resumeCommand}`,
            }),
        ),
      )

export const finishRun = (s: Session, trained: Trained, data: RunData, options: RunOptions) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const { run, model, params, at } = s
    const t = run.training
    // A run of no steps (a one-shot pruned model) still leaves a checkpoint to evaluate and sample.
    if (at.savedStep !== at.step) yield* s.save
    const finalEval = trained.lastEval ?? evaluateNow(s, data)
    // Longer sequences than trained on, where the position scheme can represent them.
    const lengths: Record<string, { loss: number; bpb: number }> = {}
    for (const length of longerLengths(run)) {
      const e = evaluate(model, params, data.validBatches(Math.max(1, Math.floor((t.batch * run.model.context) / length)), length, t.eval.tokens), data.bytesPerToken.valid)
      lengths[String(length)] = { loss: e.loss, bpb: e.bpb }
      yield* trained.log(`length ${length}: ${evalLabel(t.data)} loss ${e.loss.toFixed(4)}, ${evalLabel(t.data)} bpb ${e.bpb.toFixed(4)}`)
    }
    const sp = t.sample
    const prompt = [...(data.tokenizer.promptStart ?? []), ...Array.from(data.tokenizer.encode(sp.prompt))]
    const sampleIds = generate(model, params, prompt, { tokens: sp.tokens, temperature: sp.temperature, topK: sp.topK > 0 ? sp.topK : undefined, topP: sp.topP, stop: data.tokenizer.eotId }, Rng.derive(run.seed, "sample"))
    const sample = sp.prompt + data.tokenizer.decode(sampleIds.filter((id) => id !== data.tokenizer.eotId))
    const wallSeconds = s.elapsed()
    const summary: Summary = {
      experiment: run.experiment,
      variant: run.variant,
      seed: run.seed,
      specHash: s.specHash,
      valLoss: finalEval.loss,
      valBpb: finalEval.bpb,
      valTokens: finalEval.tokens,
      evalText: evalTextOf(t.data),
      lengths,
      trainLoss: trained.lastLoss,
      params: model.counts,
      flopsPerToken: model.flops,
      spent: {
        training: { flopsPerToken: 3 * s.trace.flopsPerToken, blocksPerToken: s.trace.blocksPerToken },
        eval: { flopsPerToken: finalEval.flopsPerToken, blocksPerToken: finalEval.blocksPerToken },
      },
      optimizerFlopsPerStep: s.optimizerFlops,
      ...(t.budget.bpb === undefined ? {} : { target: { bpb: t.budget.bpb, reached: at.reached ?? null } }),
      tokenizer: data.tokenizer.name,
      tokenizerHash: data.tokenizer.hash,
      tokenBudget: s.steps * t.batch * t.accumulate * run.model.context,
      tokensTrained: at.tokensSeen,
      steps: at.step,
      wallSeconds,
      trainSeconds: at.trainSeconds,
      tokensPerSecond: at.tokensSeen / Math.max(at.trainSeconds, 1e-9),
      ...(at.stepPeakBytes === undefined ? {} : { stepPeakBytes: at.stepPeakBytes }),
      backend: options.backend.name,
      backendDetail: s.precision === undefined ? options.backend.detail : `${options.backend.detail}; ${s.precision}`,
      machine: machineName(),
      finishedAt: new Date().toISOString(),
      sample,
      ...options.start?.summary?.(params),
    }
    yield* writeFileAtomic(path.join(s.dir, "summary.json"), JSON.stringify(summary, null, 2) + "\n").pipe(Effect.mapError((e) => new RunError({ problem: e.message })))
    yield* recordRun(run, summary, data, options)
    return summary
  })
