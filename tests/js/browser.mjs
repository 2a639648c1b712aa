// A whole dispatched trip in real headless Chromium (the system's, never a downloaded one):
// a driver context and a rider context on /app/, plus GraphiQL at /graphql. Any console error
// or uncaught page error fails the run. A screenshot of each step goes to SHOTS_DIR.
//
//   node browser.mjs http://127.0.0.1:8000 /path/to/screenshots
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const [base, shots] = process.argv.slice(2);
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const TIMEOUT_MS = Number(process.env.STEP_TIMEOUT_MS || 15000);
const PASSWORD = "correct-horse-9";
const suffix = Math.random().toString(16).slice(2, 10);
mkdirSync(shots, { recursive: true });

const problems = [];
let shot = 0;

function watch(page, who) {
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`${who} console error: ${msg.text()}`);
  });
  page.on("pageerror", (err) => problems.push(`${who} page error: ${err.message}`));
  page.setDefaultTimeout(TIMEOUT_MS);
}

async function snap(page, name) {
  shot += 1;
  const file = `${shots}/${String(shot).padStart(2, "0")}-${name}.png`;
  await page.screenshot({ path: file });
  console.log(`screenshot ${file}`);
}

async function signUp(page, path, username, first) {
  await page.goto(base + path);
  await page.fill("#auth input[name=username]", username);
  await page.fill("#auth input[name=password]", PASSWORD);
  await page.fill("#auth input[name=firstName]", first);
  await page.fill("#auth input[name=lastName]", "Tester");
  await page.click("#sign-up");
  await page.waitForSelector("#log-out", { state: "visible" });
}

// GraphiQL in a fresh context whose first page load starts with `query` and `headers` (as
// if typed in): seeded before GraphiQL reads its storage, so nothing races its own saving.
async function openGraphiQL(query, headers) {
  const context = await browser.newContext({ viewport });
  await context.addInitScript(
    ([q, h]) => {
      if (!localStorage.getItem("taxi:seeded")) {
        localStorage.setItem("graphiql:query", q);
        localStorage.setItem("graphiql:headers", h);
        localStorage.setItem("taxi:seeded", "1");
      }
    },
    [query, JSON.stringify(headers)],
  );
  const page = await context.newPage();
  watch(page, "graphiql");
  pages.push([page, "graphiql"]);
  await page.goto(base + "/graphql");
  await page.waitForSelector(".graphiql-container");
  return page;
}

async function clickMap(page, dx, dy) {
  const box = await page.locator("#map").boundingBox();
  await page.mouse.click(box.x + box.width / 2 + dx, box.y + box.height / 2 + dy);
}

const statusIs = (page, selector, value) =>
  page.waitForSelector(`${selector}[data-status="${value}"]`);

// `--user-data-dir` is Playwright's own: a fresh temporary profile per launch.
const browser = await chromium.launch({
  executablePath: CHROMIUM,
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
const pages = [];
const viewport = { width: 1200, height: 760 };
try {
  const driverContext = await browser.newContext({ viewport });
  const riderContext = await browser.newContext({ viewport });
  const driver = await driverContext.newPage();
  const rider = await riderContext.newPage();
  watch(driver, "driver");
  watch(rider, "rider");
  pages.push([driver, "driver"], [rider, "rider"]);

  // Home page and GraphiQL, served offline.
  await rider.goto(base + "/");
  await snap(rider, "home");
  await rider.goto(base + "/graphql");
  await rider.waitForSelector(".graphiql-container");
  await snap(rider, "graphiql");
  // A subscription with a bad token ends at once with a readable message (4403), not a wait.
  const badToken = await openGraphiQL("subscription { tripRequested { id } }", {
    Authorization: "Bearer not-a-token",
  });
  await badToken.click(".graphiql-execute-button");
  await badToken.waitForSelector(".result-window >> text=4403");
  await snap(badToken, "graphiql-bad-token");
  await badToken.context().close();

  // The driver signs up and goes online at the middle of the map.
  await signUp(driver, "/app/driver.html?tick=40", `driver_${suffix}`, "Dora");
  await clickMap(driver, 0, 0);
  await driver.click("#go-online");
  await driver.waitForSelector("#availability >> text=AVAILABLE");
  await snap(driver, "driver-online");

  // The rider signs up and sees the car nearby.
  await signUp(rider, "/app/rider.html", `rider_${suffix}`, "Ross");
  await rider.waitForSelector("#cars >> text=/\\d+ cars? nearby/");
  await snap(rider, "rider-sees-car");
  await clickMap(rider, 90, 60); // pick-up
  await clickMap(rider, 330, -190); // drop-off
  await rider.waitForSelector("#request:enabled");
  await snap(rider, "rider-plans");
  await rider.click("#request");
  await statusIs(rider, "#trip-status", "REQUESTED");
  const tripId = await rider.getAttribute("#ride", "data-trip");
  await snap(rider, "rider-requested");

  // GraphiQL, in the rider's browser: the same trip live, the token in the Headers tab.
  const token = await rider.evaluate(() => JSON.parse(sessionStorage.getItem("taxi.session")).access);
  const graphiql = await openGraphiQL(
    `subscription { tripUpdated(id: "${tripId}") { status driver { username } } }`,
    { Authorization: `Bearer ${token}` },
  );
  await graphiql.click(".graphiql-execute-button");
  await graphiql.waitForSelector('.result-window >> text=REQUESTED');

  // The offer reaches the driver; accepting starts the trip.
  const offer = `#offers li[data-trip="${tripId}"] button.accept`;
  await driver.waitForSelector(offer);
  await snap(driver, "driver-offer");
  await driver.click(offer);
  await statusIs(driver, "#trip-status", "STARTED");
  await driver.waitForSelector("#availability >> text=ON_TRIP");
  await statusIs(rider, "#trip-status", "STARTED");
  await snap(driver, "driver-accepted");
  await snap(rider, "rider-driver-coming");
  await graphiql.waitForSelector('.result-window >> text=STARTED');
  await snap(graphiql, "graphiql-subscription-live");
  await graphiql.context().close();

  // The driver drives to the pick-up; the rider watches the car arrive.
  await driver.click("#drive");
  await driver.waitForSelector("#message >> text=At the pick-up.");
  await rider.waitForSelector("#trip-distance >> text=The car is 0 m from you.");
  await snap(driver, "driver-at-pick-up");
  await snap(rider, "rider-car-arrived");

  await driver.click("#step");
  await statusIs(driver, "#trip-status", "IN_PROGRESS");
  await statusIs(rider, "#trip-status", "IN_PROGRESS");
  await driver.click("#drive");
  await driver.waitForSelector("#message >> text=At the drop-off.");
  await rider.waitForSelector("#trip-distance >> text=The car is 0 m from the drop-off.");
  await snap(driver, "driver-at-drop-off");
  await snap(rider, "rider-at-drop-off");

  await driver.click("#step");
  await statusIs(driver, "#trip-status", "COMPLETED");
  await driver.waitForSelector("#availability >> text=AVAILABLE");
  await statusIs(rider, "#trip-status", "COMPLETED");
  await snap(driver, "driver-completed");
  await snap(rider, "rider-rates");
  await rider.click("[data-rating='5']");
  await rider.waitForSelector("#trip-status >> text=You rated this ride 5★");
  await snap(rider, "rider-rated");
} catch (err) {
  problems.push(`step failed: ${err.message}`);
  for (const [page, who] of pages) await snap(page, `FAILED-${who}`).catch(() => {});
} finally {
  await browser.close();
}
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log("ride complete");
