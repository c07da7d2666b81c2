import * as tf from "@tensorflow/tfjs"

/**
 * tfjs's gradients (`engine.gradients`) with the same arithmetic in the same order, holding
 * less memory. tfjs keeps every tensor any recorded op saved until the whole backward pass
 * ends, and every intermediate gradient too, so a training step's peak is its activations plus
 * nearly all of their gradients. Here:
 * - each op's gradient inputs are freed once its backward ran (nothing earlier reads them);
 * - each saved tensor is freed once its op's backward ran;
 * - saves that backward cannot read are freed as the forward pass records them: ops no x
 *   flows into are never differentiated, the gradients of Add, Sub and Reshape read only
 *   their inputs' shapes (a freed tensor keeps its shape), and Multiply's and RealDiv's
 *   gradient for one operand reads only the other operand's values.
 * Gradients of f's output (times dy, ones by default) with respect to xs, undefined for those
 * it does not reach. It relies on tfjs 4's engine internals (the tape's nodes and their saved
 * arrays); nested inside another gradient computation it is tfjs's own.
 */
export const gradients = (f: () => tf.Tensor, xs: readonly tf.Tensor[], dy?: tf.Tensor): { value: tf.Tensor; grads: (tf.Tensor | undefined)[] } => {
  const engine = tf.engine() as unknown as EngineInternals
  if (engine.state.gradientDepth > 0) {
    const { value, grads } = engine.gradients(f, xs as tf.Tensor[], dy, true)
    return { value, grads: grads.map((g) => g ?? undefined) }
  }
  const ids = new Set(xs.map((x) => x.id))
  const fromX = new Set(ids)
  const y = engine.scopedRun(
    () => {
      engine.startTape()
      engine.state.activeTape = new FrugalTape(fromX, () => engine.state.gradientDepth)
    },
    () => engine.endTape(),
    () => engine.tidy("forward", f),
  )
  if (!(y instanceof tf.Tensor)) throw new Error("gradients: f() must return a tensor")
  const tape = engine.state.activeTape as TapeNode[]
  engine.state.activeTape = null
  return engine.tidy("backward", () => {
    // A clone: the caller's dy outlives the pass.
    const grads = backpropagate(filterToY(tape, fromX, y), y, dy?.clone() ?? tf.onesLike(y), ids)
    return { value: y, grads: xs.map((x) => grads.get(x.id)) }
  })
}

/** `tf.variableGrads` by `gradients`. */
export const variableGrads = (f: () => tf.Scalar, varList: readonly tf.Variable[] = trainable()): { value: tf.Scalar; grads: tf.NamedTensorMap } => {
  const xs = varList.filter((v) => v.trainable)
  const { value, grads } = gradients(() => {
    const y = f()
    if (y.rank !== 0) throw new Error(`variableGrads: f() must return a rank-0 tensor, got shape [${y.shape}]`)
    return y
  }, xs)
  const named: tf.NamedTensorMap = {}
  xs.forEach((x, i) => {
    if (grads[i] !== undefined) named[x.name] = grads[i]
  })
  if (Object.keys(named).length === 0) throw new Error("variableGrads: no variable has a gradient; make sure f() computes its loss from the variables")
  return { value: value as tf.Scalar, grads: named }
}

const trainable = (): tf.Variable[] =>
  Object.values((tf.engine() as unknown as EngineInternals).registeredVariables).filter((v) => v.trainable)

/** Ops whose gradient reads only the shapes of what they save. */
const SHAPE_ONLY = new Set(["Add", "Sub", "Reshape"])
/**
 * Ops of two saved operands (a, b) whose gradient for a reads only b's values: a is not read
 * unless b needs a gradient. Multiply's gradient for b likewise reads only a.
 */
const CROSS = new Set(["Multiply", "RealDiv"])

/**
 * The engine's tape, freeing at record time what backward will not read. `fromX` grows with the
 * outputs of every op a variable flows into, the rule tfjs later filters the tape by.
 */
class FrugalTape extends Array<TapeNode> {
  constructor(
    private readonly fromX: Set<number>,
    private readonly depth: () => number,
  ) {
    super()
  }

  // Array methods that build new arrays (map, filter) would call this constructor with a length.
  static override get [Symbol.species]() {
    return Array
  }

  override push(...nodes: TapeNode[]): number {
    for (const node of nodes) this.record(node)
    return super.push(...nodes)
  }

  private record(node: TapeNode): void {
    const inputs = Object.values(node.inputs)
    const varying = inputs.map((t) => this.fromX.has(t.id))
    if (varying.some(Boolean)) for (const out of node.outputs) this.fromX.add(out.id)
    // A gradient nested in f differentiates with respect to its own tensors: keep what it saved.
    if (this.depth() > 1) return
    if (!varying.some(Boolean) || SHAPE_ONLY.has(node.kernelName)) return release(node.saved)
    if (CROSS.has(node.kernelName) && node.saved.length === 2 && inputs.length === 2) {
      if (!varying[1]) release([node.saved[0]!])
      if (node.kernelName === "Multiply" && !varying[0]) release([node.saved[1]!])
    }
  }
}

const release = (saved: readonly tf.Tensor[]): void => {
  for (const t of saved) t.dispose()
}

/** The nodes on a path from the variables to y, their inputs pruned to those that vary with a variable (tfjs's getFilteredNodesXToY). */
const filterToY = (tape: readonly TapeNode[], fromX: ReadonlySet<number>, y: tf.Tensor): TapeNode[] => {
  const toY = new Set([y.id])
  const keep = new Set<TapeNode>()
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i]!
    if (!node.outputs.some((o) => toY.has(o.id))) continue
    const inputs = Object.values(node.inputs)
    for (const input of inputs) toY.add(input.id)
    if (inputs.some((t) => fromX.has(t.id))) keep.add(node)
  }
  const filtered: TapeNode[] = []
  for (const node of tape) {
    if (!keep.has(node)) {
      release(node.saved)
      continue
    }
    const inputs = Object.fromEntries(Object.entries(node.inputs).filter(([, t]) => fromX.has(t.id)))
    filtered.push({ ...node, inputs })
  }
  return filtered
}

/**
 * tfjs's backpropagateGradients, freeing each gradient once the op that produced its tensor
 * has consumed it, and the op's saved tensors with it. One tensor may stand for several
 * gradients (a custom gradient can return its dy for two inputs), so entries are counted.
 */
const backpropagate = (tape: readonly TapeNode[], y: tf.Tensor, dy: tf.Tensor, xs: ReadonlySet<number>): Map<number, tf.Tensor> => {
  const grads = new Map<number, tf.Tensor>()
  const uses = new Map<tf.Tensor, number>()
  const set = (id: number, t: tf.Tensor) => {
    grads.set(id, t)
    uses.set(t, (uses.get(t) ?? 0) + 1)
  }
  const drop = (id: number) => {
    const t = grads.get(id)
    if (t === undefined) return
    grads.delete(id)
    const n = uses.get(t)! - 1
    if (n > 0) uses.set(t, n)
    else {
      uses.delete(t)
      t.dispose()
    }
  }
  set(y.id, dy)
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i]!
    if (node.gradient === undefined) throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`)
    const dys = node.outputs.map((o) => grads.get(o.id) ?? null)
    const entries = Object.entries(node.inputs)
    // One tidy per op: a custom gradient computes its results eagerly, outside the thunks.
    const dxs = tf.tidy(() => {
      const inputGradients = node.gradient!(dys)
      return entries.map(([name]) => {
        const thunk = inputGradients[name]
        if (thunk === undefined)
          throw new Error(`Cannot backprop through input ${name}. Available gradients found: ${Object.keys(inputGradients)}.`)
        return thunk()
      })
    })
    entries.forEach(([name, x], k) => {
      const dx = dxs[k]!
      if (dx.dtype !== "float32") throw new Error(`Error in gradient for op ${node.kernelName}: the gradient of input ${name} must be float32, got ${dx.dtype}`)
      if (!tf.util.arraysEqual(dx.shape, x.shape))
        throw new Error(`Error in gradient for op ${node.kernelName}: the gradient of input '${name}' has shape [${dx.shape}], the input [${x.shape}]`)
      const current = grads.get(x.id)
      if (current === undefined) set(x.id, dx)
      else {
        const sum = tf.add(current, dx)
        drop(x.id)
        if (!uses.has(dx)) dx.dispose()
        set(x.id, sum)
      }
    })
    for (const o of node.outputs) if (!xs.has(o.id)) drop(o.id)
    release(node.saved.filter((t) => !uses.has(t)))
  }
  return grads
}

interface TapeNode {
  readonly id: number
  readonly kernelName: string
  readonly inputs: Record<string, tf.Tensor>
  readonly outputs: tf.Tensor[]
  readonly saved: tf.Tensor[]
  readonly gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>
}

interface EngineInternals {
  readonly state: { gradientDepth: number; activeTape: TapeNode[] | null }
  readonly registeredVariables: Record<string, tf.Variable>
  startTape(): void
  endTape(): void
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T
  tidy<T extends tf.TensorContainer>(name: string, f: () => T): T
  gradients(f: () => tf.Tensor, xs: tf.Tensor[], dy?: tf.Tensor, allowNoGradients?: boolean): { value: tf.Tensor; grads: (tf.Tensor | null)[] }
}
