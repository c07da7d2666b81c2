import { type Browser, chromium } from "playwright-core"

/**
 * Headless Chromium (Debian's package, installed by scripts/setup.sh) driven by
 * playwright-core, for tests that look at a page as a reader does. The flags keep it from
 * reaching out to the network (updates, sync, field trials) and from needing a GPU or a
 * sandbox (tests run as root). Playwright gives every launch a fresh profile directory of its
 * own (it refuses a --user-data-dir flag).
 */
export const chromiumPath = "/usr/bin/chromium"

export const launchChromium = (): Promise<Browser> =>
  chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  })
