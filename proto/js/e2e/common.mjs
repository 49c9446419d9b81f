// Shared by the browser end-to-end scripts: Debian's Chromium launched
// headless by playwright-core (no browser is downloaded), and the small
// helpers every script uses to report to its driver (tests/tests/browser.rs).
import { chromium } from "playwright-core";

/** Waits `ms` milliseconds. */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Writes one line to the driver. */
export const say = (line) => process.stdout.write(`${line}\n`);

/** Fails the script with `message` unless `condition` holds. */
export function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

/** Headless Chromium: `CHROMIUM` or /usr/bin/chromium. */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}
