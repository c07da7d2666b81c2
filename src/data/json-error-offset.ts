/**
 * Index of the first character at which `text` stops being valid JSON (text.length when it
 * ends too early). Node's JSON.parse does not always say where it failed; this runs only on
 * that error path. Iterative, so deeply nested input cannot overflow the stack.
 */
export const jsonErrorOffset = (text: string): number => {
  let i = 0
  const ws = () => {
    while (i < text.length && (text[i] === " " || text[i] === "\t" || text[i] === "\n" || text[i] === "\r")) i++
  }
  const string = (): boolean => {
    i++
    while (i < text.length) {
      const c = text.charCodeAt(i)
      if (c === 0x22) {
        i++
        return true
      }
      if (c < 0x20) return false
      if (c === 0x5c) {
        const e = text[i + 1]
        if (e === undefined) return false
        if (e === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) return false
          i += 6
        } else if ('"\\/bfnrt'.includes(e)) i += 2
        else {
          i++
          return false
        }
      } else i++
    }
    return false
  }
  const scalar = (): boolean => {
    const m = /^(?:-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(text.slice(i, i + 400))
    if (m === null) return false
    i += m[0].length
    return true
  }
  // Stack of open containers: "[" or "{"; `expectValue` is true where a value must come next.
  const stack: string[] = []
  let expectValue = true
  for (;;) {
    ws()
    if (i >= text.length) return text.length
    if (expectValue) {
      const c = text[i]
      if (c === "[" || c === "{") {
        stack.push(c)
        i++
        ws()
        if (text[i] === (c === "[" ? "]" : "}")) {
          stack.pop()
          i++
          expectValue = false
        } else if (c === "{") {
          if (text[i] !== '"' || !string()) return Math.min(i, text.length)
          ws()
          if (text[i] !== ":") return Math.min(i, text.length)
          i++
        }
        if (stack.length === 0) break
        continue
      }
      if (c === '"' ? !string() : !scalar()) return Math.min(i, text.length)
      expectValue = false
      if (stack.length === 0) break
      continue
    }
    const top = stack[stack.length - 1]!
    const c = text[i]
    if (c === ",") {
      i++
      if (top === "{") {
        ws()
        if (text[i] !== '"' || !string()) return Math.min(i, text.length)
        ws()
        if (text[i] !== ":") return Math.min(i, text.length)
        i++
      }
      expectValue = true
    } else if (c === (top === "[" ? "]" : "}")) {
      stack.pop()
      i++
      if (stack.length === 0) break
    } else return i
  }
  ws()
  return i
}
