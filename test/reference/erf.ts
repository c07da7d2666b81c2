/** erf in float64: Maclaurin series near 0, continued fraction in the tails (both converge to double precision). */
export const erf = (x: number): number => {
  const t = Math.abs(x)
  if (t < 3) {
    let sum = t
    let term = t
    for (let n = 1; n < 80; n++) {
      term *= (-t * t) / n
      sum += term / (2 * n + 1)
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum
  }
  let f = 0
  for (let n = 80; n >= 1; n--) f = n / 2 / (t + f)
  return Math.sign(x) * (1 - Math.exp(-t * t) / Math.sqrt(Math.PI) / (t + f))
}
