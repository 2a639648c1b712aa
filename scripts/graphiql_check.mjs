// GraphiQL subscription check, in a real browser (manual; NOT run by CI).
//
// Proves that the GraphiQL page served at GET /graphql can run a subscription with the
// access token typed into its Headers tab (GraphiQL sends the Headers tab as the
// graphql-transport-ws connection_init payload), and that a bad token there yields an
// error / closed socket instead of data. Writes two screenshots.
//
// Prerequisites
//   - Chromium:        apt-get install -y chromium            (default: /usr/bin/chromium)
//   - playwright-core: in a scratch dir, NOT in the repo:
//       mkdir -p /tmp/gq && cd /tmp/gq && npm init -y && npm install playwright-core
//   - Optional, for machines that cannot reach unpkg.com (the page loads GraphiQL from it):
//       npm install graphiql@3.8.3 react@18.2.0 react-dom@18.2.0 js-cookie@3.0.5 \
//                   @graphiql/plugin-explorer@1.0.2
//     unpkg.com requests are then answered from that node_modules (same bytes: the page's
//     SRI integrity hashes still apply). Match the versions in the page's <script> tags.
//   - A running server, e.g.
//       cd /work/main && export DATABASE_URL=sqlite+aiosqlite:////tmp/gq/taxi.db
//       rm -f /tmp/gq/taxi.db && .venv/bin/taxi migrate && .venv/bin/taxi serve --port 8123
//
// Usage (run from the scratch dir so playwright-core resolves):
//   cd /tmp/gq && node /work/main/scripts/graphiql_check.mjs [http://127.0.0.1:8123/graphql]
// Environment: CHROMIUM (browser path), OUT_DIR (screenshots; default: cwd),
//              DEPS_DIR (dir with node_modules; default: cwd).
// Takes about a minute: graphql-ws (inside GraphiQL) retries a 4403 close five times
// before GraphiQL shows the error. Exit code 0 when both checks pass.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

const URL_ = process.argv[2] || "http://127.0.0.1:8123/graphql";
const DEPS_DIR = path.resolve(process.env.DEPS_DIR || process.cwd());
const OUT_DIR = path.resolve(process.env.OUT_DIR || process.cwd());
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const require = createRequire(path.join(DEPS_DIR, "package.json"));
const { chromium } = require("playwright-core");

const SUBSCRIPTION = "subscription { tripRequested { id pickUpAddress status } }";

async function gql(query, variables = {}, token) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(URL_, { method: "POST", headers, body: JSON.stringify({ query, variables }) });
  const body = await res.json();
  if (body.errors) throw new Error(`${query.slice(0, 40)}...: ${JSON.stringify(body.errors)}`);
  return body.data;
}

async function user(group) {
  const username = `${group.toLowerCase()}_${Date.now()}_${Math.floor(Math.random() * 1e6)}`;
  const password = "graphiql-Check-pw-123";
  await gql(
    `mutation ($input: SignUpInput!) { signUp(input: $input) { id } }`,
    { input: { username, firstName: "G", lastName: group, password1: password, password2: password, group } },
  );
  const data = await gql(
    `mutation ($u: String!, $p: String!) { logIn(username: $u, password: $p) { access } }`,
    { u: username, p: password },
  );
  return data.logIn.access;
}

async function requestTrip(riderToken, address) {
  const data = await gql(
    `mutation ($input: RequestTripInput!) { requestTrip(input: $input) { id pickUpAddress status } }`,
    { input: { pickUpAddress: address, dropOffAddress: "Airport" } },
    riderToken,
  );
  return data.requestTrip;
}

/** Answer unpkg.com from DEPS_DIR/node_modules when the package is there. */
async function serveUnpkgLocally(context) {
  const types = { ".js": "application/javascript", ".css": "text/css", ".map": "application/json" };
  await context.route(/^https:\/\/unpkg\.com\//, async (route) => {
    const rest = new URL(route.request().url()).pathname.slice(1); // "@scope/name@1.2.3/dist/x.js"
    const m = rest.match(/^((?:@[^/]+\/)?[^/@]+)(?:@([^/]+))?\/(.*)$/);
    const file = m && path.join(DEPS_DIR, "node_modules", m[1], m[3]);
    let version;
    try {
      version = JSON.parse(fs.readFileSync(path.join(DEPS_DIR, "node_modules", m[1], "package.json"))).version;
    } catch {}
    if (file && version && (!m[2] || m[2] === version) && fs.existsSync(file)) {
      return route.fulfill({
        status: 200,
        body: fs.readFileSync(file),
        headers: {
          "content-type": types[path.extname(file)] || "application/octet-stream",
          "access-control-allow-origin": "*",
        },
      });
    }
    return route.continue();
  });
}

function watchSockets(page, log) {
  page.on("websocket", (ws) => {
    log(`ws open ${ws.url()}`);
    ws.on("framesent", (f) => log(`  -> ${String(f.payload).slice(0, 200)}`));
    ws.on("framereceived", (f) => log(`  <- ${String(f.payload).slice(0, 200)}`));
    ws.on("close", () => log("  ws closed"));
  });
}

/** Replace a CodeMirror editor's text by clicking into it, selecting all and typing. */
async function typeInto(page, editorSelector, text) {
  const cm = page.locator(`${editorSelector} .CodeMirror`).filter({ visible: true }).first();
  await cm.click();
  await page.keyboard.press("Control+A");
  await page.keyboard.press("Delete");
  await page.keyboard.type(text, { delay: 5 });
  await page.keyboard.press("Escape"); // close any autocomplete popup
  const value = await cm.evaluate((el) => el.CodeMirror.getValue());
  if (value !== text) throw new Error(`editor ${editorSelector} holds ${JSON.stringify(value)}, wanted ${JSON.stringify(text)}`);
  await page.keyboard.press("Control+Home"); // scroll back so the screenshot shows the start
}

async function resultText(page) {
  return page.locator(".graphiql-response .CodeMirror").first().evaluate((el) => el.CodeMirror.getValue());
}

async function openGraphiQL(page, headersJson) {
  await page.goto(URL_, { waitUntil: "load" });
  // GraphiQL persists tabs and headers in localStorage: start each check from a clean page.
  await page.evaluate(() => localStorage.clear());
  await page.reload({ waitUntil: "load" });
  await page.locator(".graphiql-query-editor .CodeMirror").first().waitFor({ timeout: 30000 });
  await typeInto(page, ".graphiql-query-editor", SUBSCRIPTION);
  // The Headers tab sits beside Variables under the query editor.
  await page.getByRole("button", { name: /^headers$/i }).click();
  await typeInto(page, ".graphiql-editor-tool", headersJson);
  await page.locator(".graphiql-execute-button").click();
}

async function main() {
  fs.mkdirSync(OUT_DIR, { recursive: true });
  // Two riders: a rider may have only one active trip at a time.
  const [riderToken, rider2Token, driverToken] = await Promise.all([user("RIDER"), user("RIDER"), user("DRIVER")]);
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "graphiql-check-profile-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 800 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  await serveUnpkgLocally(context);
  // Record each WebSocket close code/reason (Playwright's own close event has neither).
  await context.addInitScript(() => {
    window.__wsCloses = [];
    const Native = window.WebSocket;
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        this.addEventListener("close", (e) => window.__wsCloses.push({ code: e.code, reason: e.reason }));
      }
    };
  });
  const failures = [];
  try {
    // 1. The driver's token in the Headers tab: the subscription gets the requested trip.
    const page = context.pages()[0] || (await context.newPage());
    page.on("console", (msg) => msg.type() === "error" && console.log(`[page] ${msg.text()}`));
    watchSockets(page, (line) => console.log(`[good] ${line}`));
    await openGraphiQL(page, JSON.stringify({ Authorization: `Bearer ${driverToken}` }));
    const version = await page.evaluate(
      () => [...document.scripts].map((s) => s.src.match(/\/graphiql@([^/]+)\//)?.[1]).find(Boolean) ?? "?",
    );
    console.log(`GraphiQL version (from the page's <script src>): ${version}`);
    await page.waitForTimeout(1500); // connection_init / connection_ack / subscribe
    const trip = await requestTrip(riderToken, `GraphiQL check ${new Date().toISOString()}`);
    console.log(`requested trip ${trip.id}`);
    await page.waitForFunction(
      (id) => document.querySelector(".graphiql-response .CodeMirror")?.CodeMirror.getValue().includes(id),
      trip.id, { timeout: 10000 },
    ).catch(() => {});
    const good = await resultText(page);
    console.log(`[good] result pane:\n${good}`);
    await page.screenshot({ path: path.join(OUT_DIR, "graphiql-subscription.png") });
    if (!(good.includes(`"id": "${trip.id}"`) && good.includes(trip.pickUpAddress) && good.includes("REQUESTED"))) {
      failures.push("the subscription did not show the requested trip");
    }
    await page.close();

    // 2. A bad token in the Headers tab: an error / closed socket, never data.
    const bad = await context.newPage();
    const frames = [];
    watchSockets(bad, (line) => { frames.push(line); console.log(`[bad] ${line}`); });
    await openGraphiQL(bad, JSON.stringify({ Authorization: "Bearer not-a-valid-token" }));
    await bad.waitForTimeout(1500);
    const trip2 = await requestTrip(rider2Token, `GraphiQL bad-token check ${new Date().toISOString()}`);
    // PROTOCOL.md: a bad token closes with 4403 Forbidden. graphql-ws (inside GraphiQL)
    // treats 4403 as retryable ("might grant access after retry"): it reconnects 5 times
    // with exponential backoff (~35-50 s) before GraphiQL shows the close as an error.
    await bad.waitForFunction(
      () => document.querySelector(".graphiql-response .CodeMirror")?.CodeMirror.getValue().trim(),
      null, { timeout: 90000 },
    ).catch(() => {});
    console.log(`[bad] close events seen by the page: ${JSON.stringify(await bad.evaluate(() => window.__wsCloses))}`);
    const badText = await resultText(bad);
    console.log(`[bad] result pane:\n${badText}`);
    await bad.screenshot({ path: path.join(OUT_DIR, "graphiql-bad-token.png") });
    if (badText.includes(trip2.id) || badText.includes('"data"')) failures.push("a bad token got data");
    if (!/error|closed|4403|forbidden/i.test(badText)) failures.push("a bad token showed no error");
    if (frames.some((f) => f.includes("connection_ack"))) failures.push("a bad token was acknowledged");
    const closes = await bad.evaluate(() => window.__wsCloses);
    if (!closes.length || closes.some((c) => c.code !== 4403)) failures.push(`unexpected close codes ${JSON.stringify(closes)}`);
  } finally {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  if (failures.length) {
    console.error(`FAIL: ${failures.join("; ")}`);
    process.exit(1);
  }
  console.log(`OK; screenshots in ${OUT_DIR}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
