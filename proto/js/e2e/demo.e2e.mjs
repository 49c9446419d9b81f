// End-to-end test of the demo page in headless Chromium (Debian's
// /usr/bin/chromium driven by playwright-core; no browser is downloaded).
// Run by tests/tests/browser.rs against a real gateway, runner, PostgreSQL
// and RabbitMQ.
//
// Environment:
//   DEMO_URL        the page, e.g. http://127.0.0.1:8080/demo
//   SCREENSHOT      where to save the final screenshot (PNG)
//   FIRST_ID        first id of the 10,000-row batch (default random)
//   CHROMIUM        browser binary (default /usr/bin/chromium)
//
// Talks to its driver over stdio: prints `RESTART` when the job stream is
// running and the gateway should be restarted, then waits for a line
// `RESTARTED` on stdin. Without a driver (stdin is a terminal) it skips the
// restart. Prints `RESULT {json}` and exits 0 when every check passed.
import { createInterface } from "node:readline";
import { check, launchChromium, say, sleep } from "./common.mjs";

const url = process.env.DEMO_URL ?? "http://127.0.0.1:8080/demo";
const screenshot = process.env.SCREENSHOT ?? "demo-e2e.png";
const firstId = Number(process.env.FIRST_ID ?? 1_000_000_000 + Math.floor(Math.random() * 1_000_000_000));
const user = `e2e-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

const lines = createInterface({ input: process.stdin });
const stdinLines = [];
let lineWaiter = null;
lines.on("line", (line) => {
  stdinLines.push(line.trim());
  lineWaiter?.();
});
async function waitForLine(expected, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (!stdinLines.includes(expected)) {
    if (Date.now() > deadline) throw new Error(`no ${expected} from the driver in ${timeoutMs} ms`);
    await new Promise((resolve) => {
      lineWaiter = resolve;
      setTimeout(resolve, 200);
    });
  }
}

const browser = await launchChromium();
let exitCode = 0;
const page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
const consoleErrors = [];
page.on("console", (msg) => {
  if (msg.type() === "error") consoleErrors.push(msg.text());
});
page.on("pageerror", (err) => consoleErrors.push(String(err)));
const stats = () => page.evaluate(() => window.sluiceDemo.stats());

try {
  // 1. Sign in and connect.
  await page.goto(url);
  await page.fill("#user", user);
  await page.click("#signin-btn");
  await page.waitForSelector('#state[data-state="open"]', { timeout: 15_000 });
  say(`signed in as ${user}`);

  // 2. A 10,000-row batch, submitted from the form, ends `done`.
  await page.fill("#rows", "10000");
  await page.fill("#first-id", String(firstId));
  const t0 = Date.now();
  await page.click("#batch-btn");
  await page.waitForFunction(
    () => Object.values(window.sluiceDemo.stats().statuses).some((s) => s === "done"),
    null,
    { timeout: 60_000 },
  );
  const batchMs = Date.now() - t0;
  let s = await stats();
  check(s.jobs === 1 && s.ended === 1 && s.terminalEvents === 1, `one batch job ended once: ${JSON.stringify(s)}`);
  await page.waitForSelector("tr[data-job] .status:text('done')", { timeout: 5_000 });
  say(`10,000-row batch done in ${batchMs} ms (first id ${firstId})`);

  // 2b. The kinds form lists the deployment's kinds (GET /v1/kinds) and
  // submits any of them with JSON args.
  await page.waitForSelector('#kind option[value="sleep"]', { state: "attached", timeout: 15_000 });
  await page.selectOption("#kind", "sleep");
  await page.fill("#kind-args", '{"ms": 5}');
  await page.click("#any-btn");
  await page.waitForFunction(() => window.sluiceDemo.stats().ended === 2, null, { timeout: 30_000 });
  s = await stats();
  check(s.jobs === 2 && s.terminalEvents === 2, `the kinds form ran a sleep: ${JSON.stringify(s)}`);
  say("kinds form: sleep submitted from the listed kinds ended done");

  // 2c. A backend publishes to this user (the driver, with a service
  // token); the page shows the message once.
  if (!process.stdin.isTTY) {
    say(`PUBLISH ${user}`);
    await waitForLine("PUBLISHED", 30_000);
    await page.waitForFunction(() => window.sluiceDemo.stats().messages.length >= 1, null, { timeout: 30_000 });
    await sleep(500);
    s = await stats();
    check(
      s.messages.length === 1 && s.messages[0].data.text === "hello from the backend",
      `one published message shown: ${JSON.stringify(s.messages)}`,
    );
    say("a message published by the backend reached the page once");
  }

  // 3. A stream of jobs; the gateway restarts in the middle of it.
  const refused = [];
  let streaming = true;
  const stream = (async () => {
    let i = 0;
    while (streaming) {
      const job =
        i % 5 === 4
          ? { kind: "batch_upsert", args: { table: "items", key: ["id"], rows: [{ id: firstId + 20_000 + i, value: `stream ${i}` }] } }
          : { kind: "sleep", args: { ms: 300 + (i % 4) * 250 } };
      page
        .evaluate((j) => window.sluiceDemo.submit(j).then(() => null, (e) => `${e.code}: ${e.message}`), job)
        .then((err) => err && refused.push(err), (err) => refused.push(String(err)));
      i += 1;
      await sleep(100);
    }
    return i;
  })();
  await sleep(1500);
  const driven = !process.stdin.isTTY;
  const restartAt = Date.now();
  if (driven) {
    say("RESTART");
    await waitForLine("RESTARTED", 90_000);
    say(`driver restarted the gateway in ${Date.now() - restartAt} ms`);
  }
  await page.waitForFunction(() => window.sluiceDemo.stats().state === "open", null, { timeout: 60_000 });
  await sleep(1500);
  streaming = false;
  const submitted = await stream;

  // 4. Every job ends, and each terminal event arrives exactly once.
  await page.waitForFunction(
    (n) => {
      const st = window.sluiceDemo.stats();
      return st.jobs >= n && st.ended === st.jobs;
    },
    2 + submitted - refused.length,
    { timeout: 90_000 },
  );
  await sleep(1000); // late duplicates would show up now
  s = await stats();
  const counts = Object.values(s.terminalCounts);
  check(refused.length === 0, `no submit refused: ${JSON.stringify(refused)}`);
  check(s.jobs === 2 + submitted, `every submitted job accepted: ${s.jobs} of ${2 + submitted}`);
  check(counts.every((c) => c === 1), `each terminal event exactly once: ${JSON.stringify(s.terminalCounts)}`);
  check(Object.values(s.statuses).every((st) => st === "done"), `all done: ${JSON.stringify(s.statuses)}`);
  if (driven) {
    check(s.reconnects >= 1, `the page reconnected: ${s.reconnects}`);
    check(s.outages.length >= 1, "a reconnect-and-resume time was measured");
    const resumed = await page.evaluate(() => window.sluiceDemo.client.welcome.resumed);
    check(resumed === true, "the reconnect resumed (welcome.resumed true)");
    check(!s.gap, "no gap");
  }
  check(s.pings > 0, "pong latency was measured");
  // With one gateway behind nginx, a request made while it restarts gets the
  // proxy's 502/503; the client retries it (its reconnect is checked above).
  // Every other console error fails the test.
  const unexpected = consoleErrors.filter(
    (e) => !/Failed to load resource: the server responded with a status of 50[23]/.test(e),
  );
  check(unexpected.length === 0, `no unexpected console errors: ${unexpected.join(" | ")}`);

  await page.screenshot({ path: screenshot, fullPage: true });
  const resumeMs = s.outages.length ? Math.max(...s.outages) : null;
  say(`screenshot: ${screenshot}`);
  if (resumeMs !== null) say(`reconnect-and-resume time: ${resumeMs.toFixed(0)} ms (page lost its socket -> resumed welcome)`);
  say(
    `RESULT ${JSON.stringify({
      user,
      batchMs,
      jobs: s.jobs,
      terminalEvents: s.terminalEvents,
      reconnects: s.reconnects,
      duplicatesDropped: s.duplicatesDropped,
      resumeMs,
      screenshot,
    })}`,
  );
} catch (err) {
  exitCode = 1;
  console.error(err);
  try {
    await page.screenshot({ path: screenshot.replace(/\.png$/, "-failed.png"), fullPage: true });
    console.error(`stats: ${JSON.stringify(await stats())}`);
    console.error(`log: ${await page.evaluate(() => document.getElementById("log").textContent.slice(-4000))}`);
  } catch {
    // the page is gone
  }
} finally {
  await browser.close();
  lines.close();
}
process.exit(exitCode);
