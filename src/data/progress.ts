/**
 * Progress of a long step (download, tokenising) on stderr: a redrawn bar on a TTY, else a
 * plain line every 10 % (or every 64 MiB when the total is unknown), so logs stay readable.
 */
export class Progress {
  private done = 0
  private lastDraw = 0
  private lastStep = -1
  private readonly start = Date.now()
  private readonly tty: boolean

  constructor(
    private readonly label: string,
    private total: number | undefined,
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {
    this.tty = out.isTTY === true
  }

  setTotal(total: number | undefined): void {
    this.total = total
  }

  update(done: number): void {
    this.done = done
    if (this.tty) {
      const now = Date.now()
      if (now - this.lastDraw < 100) return
      this.lastDraw = now
      this.out.write(`\r${this.render()}`)
      return
    }
    const step = this.total !== undefined && this.total > 0 ? Math.floor((10 * done) / this.total) : Math.floor(done / 2 ** 26)
    if (step !== this.lastStep) {
      this.lastStep = step
      this.out.write(`${this.render()}\n`)
    }
  }

  finish(): void {
    this.out.write(this.tty ? `\r${this.render()}\n` : `${this.render()} done\n`)
  }

  private render(): string {
    const mb = (n: number) => (n / 2 ** 20).toFixed(1)
    const secs = Math.max((Date.now() - this.start) / 1000, 1e-3)
    const rate = `${mb(this.done / secs)} MiB/s`
    if (this.total === undefined || this.total <= 0) return `${this.label} ${mb(this.done)} MiB ${rate}`
    const frac = Math.min(this.done / this.total, 1)
    const width = 30
    const filled = Math.round(frac * width)
    const bar = this.tty ? `[${"#".repeat(filled)}${" ".repeat(width - filled)}] ` : ""
    return `${this.label} ${bar}${(100 * frac).toFixed(0).padStart(3)}% ${mb(this.done)}/${mb(this.total)} MiB ${rate}`
  }
}
