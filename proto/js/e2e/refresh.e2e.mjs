// Token lifetime in headless Chromium, through the demo page with tokens
// of TOKEN_TTL seconds (`?token_ttl=`): the browser client refreshes its
// token in-band before each `exp`, so one socket outlives several tokens;
// and when no fresh token can be had, the gateway closes the session with
// 4001 at expiry, and the client, once tokens come again, reconnects with
// resume and misses nothing.
//
// Environment:
//   DEMO_URL   the page, e.g. http://127.0.0.1:8080/demo
//   TOKEN_TTL  token lifetime in seconds (default 4)
//   CHROMIUM   browser binary (default /usr/bin/chromium)
//
// Prints `RESULT {json}` and exits 0 when every check passed.
import { check, launchChromium, say, sleep } from "./common.mjs";

const url = process.env.DEMO_URL ?? "http://127.0.0.1:8080/demo";
const ttlSecs = Number(process.env.TOKEN_TTL ?? 4);
const user = `refresh-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

const browser = await launchChromium();
let exitCode = 0;
const page = await browser.newPage();
const stats = () => page.evaluate(() => window.sluiceDemo.stats());
const submitSleep = (ms) =>
  page.evaluate((ms) => window.sluiceDemo.submit({ kind: "sleep", args: { ms } }), ms);
const waitEnded = (id, timeout) =>
  page.waitForFunction((id) => window.sluiceDemo.stats().terminalCounts[id] >= 1, id, { timeout });

try {
  await page.goto(`${url}?token_ttl=${ttlSecs}`);
  await page.fill("#user", user);
  await page.click("#signin-btn");
  await page.waitForSelector('#state[data-state="open"]', { timeout: 15_000 });
  const session = await page.evaluate(() => window.sluiceDemo.client.welcome.session);

  // 1. One socket outlives three tokens: a job that runs three lifetimes
  // is followed to its end without a reconnect.
  const long = await submitSleep(3 * ttlSecs * 1000);
  await waitEnded(long, 3 * ttlSecs * 1000 + 15_000);
  let s = await stats();
  check(s.reconnects === 0, `no reconnect while refreshing: ${JSON.stringify(s)}`);
  check(s.tokensFetched >= 3, `tokens fetched for in-band refresh: ${s.tokensFetched}`);
  check(s.statuses[long] === "done" && s.terminalCounts[long] === 1, `the long job ended once: ${JSON.stringify(s)}`);
  const sameSession = await page.evaluate(() => window.sluiceDemo.client.welcome.session);
  check(sameSession === session, "still the first session");
  const refreshedTokens = s.tokensFetched;
  say(`one session outlived ${refreshedTokens} tokens of ${ttlSecs} s`);

  // 2. No fresh token to be had: at expiry the gateway closes with 4001
  // and the client's reconnects find no token. A job running meanwhile
  // ends while the page has no socket.
  await page.route("**/v1/dev/token", (route) =>
    route.fulfill({
      status: 503,
      contentType: "application/json",
      body: '{"error":{"code":"unavailable","message":"token issuer down (test)"}}',
    }),
  );
  const during = await submitSleep(2 * ttlSecs * 1000);
  await page.waitForFunction(() => window.sluiceDemo.stats().state !== "open", null, {
    timeout: ttlSecs * 1000 + 10_000,
  });
  say("the session ended at its token's expiry");
  await sleep(2 * ttlSecs * 1000); // the job ends while the page is away
  await page.unroute("**/v1/dev/token");

  // 3. Tokens again: the client reconnects with resume, and the job's
  // `done` arrives once.
  await page.waitForSelector('#state[data-state="open"]', { timeout: 30_000 });
  await waitEnded(during, 30_000);
  await sleep(1000); // a late duplicate would show up now
  s = await stats();
  check(s.statuses[during] === "done" && s.terminalCounts[during] === 1, `the job ended once: ${JSON.stringify(s)}`);
  check(s.reconnects >= 1, `the client reconnected: ${s.reconnects}`);
  const welcome = await page.evaluate(() => window.sluiceDemo.client.welcome);
  check(welcome.resumed === true, "the reconnect resumed");
  check(welcome.session !== session, "a new session");
  check(!s.gap, "no gap");
  check(Object.values(s.terminalCounts).every((c) => c === 1), `each terminal event once: ${JSON.stringify(s.terminalCounts)}`);
  say(`RESULT ${JSON.stringify({ user, ttlSecs, refreshedTokens, reconnects: s.reconnects, tokensFetched: s.tokensFetched })}`);
} catch (err) {
  exitCode = 1;
  console.error(err);
  try {
    console.error(`stats: ${JSON.stringify(await stats())}`);
    console.error(`log: ${await page.evaluate(() => document.getElementById("log").textContent.slice(-4000))}`);
  } catch {
    // the page is gone
  }
} finally {
  await browser.close();
}
process.exit(exitCode);
