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
try {
  const viewport = { width: 1200, height: 760 };
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
  await rider.evaluate(() => {
    localStorage.setItem("graphiql:query", "subscription { tripRequested { id } }");
    localStorage.setItem("graphiql:headers", '{"Authorization": "Bearer not-a-token"}');
  });
  await rider.reload();
  await rider.waitForSelector(".graphiql-container");
  await rider.click(".graphiql-execute-button");
  await rider.waitForSelector(".result-window >> text=4403");
  await snap(rider, "graphiql-bad-token");
  await rider.evaluate(() => localStorage.clear());

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
  await snap(rider, "rider-requested");

  // GraphiQL, in the rider's browser: the same trip live, the token in the Headers tab.
  const token = await rider.evaluate(() => JSON.parse(sessionStorage.getItem("taxi.session")).access);
  const tripId = await rider.getAttribute("#ride", "data-trip");
  const graphiql = await riderContext.newPage();
  watch(graphiql, "graphiql");
  pages.push([graphiql, "graphiql"]);
  await graphiql.goto(base + "/graphql");
  await graphiql.evaluate(
    ([query, headers]) => {
      localStorage.setItem("graphiql:query", query);
      localStorage.setItem("graphiql:headers", headers);
    },
    [
      `subscription { tripUpdated(id: "${tripId}") { status driver { username } } }`,
      JSON.stringify({ Authorization: `Bearer ${token}` }),
    ],
  );
  await graphiql.reload();
  await graphiql.waitForSelector(".graphiql-container");
  await graphiql.click(".graphiql-execute-button");
  await graphiql.waitForSelector('.result-window >> text=REQUESTED');

  // The offer reaches the driver; accepting starts the trip.
  await driver.waitForSelector("#offers button.accept");
  await snap(driver, "driver-offer");
  await driver.click("#offers button.accept");
  await statusIs(driver, "#trip-status", "STARTED");
  await driver.waitForSelector("#availability >> text=ON_TRIP");
  await statusIs(rider, "#trip-status", "STARTED");
  await snap(driver, "driver-accepted");
  await snap(rider, "rider-driver-coming");
  await graphiql.waitForSelector('.result-window >> text=STARTED');
  await snap(graphiql, "graphiql-subscription-live");
  await graphiql.close();

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
