// The web app in real headless Chromium (the system's, never a downloaded one), on one
// screen size: SCREEN=desktop (1200×760, plus the home page and GraphiQL) or SCREEN=phone
// (390×844). Riders and drivers in their own contexts ride a quoted trip to its receipt,
// watch the ETA fall and the driver arrive, a driver gives a trip back and another gets it,
// a no-show, an expiry, a session ended elsewhere (4403: the page stops and says why), and
// a keyboard-only rider, deactivated by an admin while waiting. Any console error or uncaught page error fails the run. A
// screenshot of each step goes to SHOTS_DIR.
//
//   SCREEN=phone node browser.mjs http://127.0.0.1:8000 /path/to/screenshots
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";
import {
  PASSWORD, attr, clickMap, query, reasonIs, recordBusy, recordEtas, signUp, statusIs, tabTo,
  typeAddress,
} from "./appflows.mjs";

const [base, shots] = process.argv.slice(2);
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const TIMEOUT_MS = Number(process.env.STEP_TIMEOUT_MS || 15000);
const SCREEN = process.env.SCREEN || "desktop";
const PHONE = SCREEN === "phone";
const suffix = Math.random().toString(16).slice(2, 10);
mkdirSync(shots, { recursive: true });

const screen = PHONE
  ? { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true }
  : { viewport: { width: 1200, height: 760 } };
const problems = [];
const pages = [];
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

function check(ok, message) {
  if (!ok) throw new Error(message);
}

async function open(who, options = screen) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  watch(page, who);
  pages.push([page, who]);
  return page;
}

// GraphiQL in a fresh context whose first page load starts with `query` and `headers` (as
// if typed in): seeded before GraphiQL reads its storage, so nothing races its own saving.
async function openGraphiQL(query, headers) {
  const context = await browser.newContext(screen);
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

// Home, GraphiQL, and a subscription with a bad token ending at once (4403), not a wait.
async function graphiql() {
  const page = await open("home");
  await page.goto(base + "/");
  await snap(page, "home");
  await page.goto(base + "/graphql");
  await page.waitForSelector(".graphiql-container");
  await snap(page, "graphiql");
  const badToken = await openGraphiQL("subscription { tripRequested { id } }", {
    Authorization: "Bearer not-a-token",
  });
  await badToken.click(".graphiql-execute-button");
  await badToken.waitForSelector(".result-window >> text=4403");
  await snap(badToken, "graphiql-bad-token");
  await badToken.context().close();
  await page.context().close();
}

// The rider sets both ends: by clicking the map (desktop) or typing addresses (phone).
async function plan(rider, clicks, addresses) {
  if (PHONE) {
    await typeAddress(rider, "#pick-up", addresses[0]);
    await typeAddress(rider, "#drop-off", addresses[1]);
  } else {
    await clickMap(rider, ...clicks[0]);
    await clickMap(rider, ...clicks[1]);
  }
  await rider.waitForSelector("#request:enabled");
  await rider.waitForSelector("#quote[data-amount]");
  return Number(await attr(rider, "#quote", "data-amount"));
}

async function goOnline(driver, where) {
  if (PHONE) await typeAddress(driver, "#car-at", where);
  else await clickMap(driver, 0, 0);
  await driver.click("#go-online");
  await driver.waitForSelector("#availability >> text=AVAILABLE");
}

const FARE = `query Fare($id: ID!) { trip(id: $id) { fare { quoted { amount } final { amount } } } }`;

// 1. A quoted ride from the quote to the receipt; the ETA falls, the driver arrives.
async function quotedRide(driverA, rider) {
  await rider.waitForSelector("#cars[data-cars='1']");
  await snap(rider, "rider-sees-car");
  // Across the map (about 3 km): a price above FARE_MINIMUM, so the equalities below are
  // the tariff's, not the minimum's.
  const price = await plan(rider, [[-380, 300], [380, -300]], ["University", "Park Gate"]);
  await snap(rider, "rider-quote");
  await recordBusy(rider, "#request");
  await rider.click("#request");
  await statusIs(rider, "REQUESTED");
  const busy = await rider.evaluate(() => window.busy);
  check(busy.includes("Requesting…"), `the Request button never showed the request in flight: ${busy}`);
  const tripId = await attr(rider, "#ride", "data-trip");
  await snap(rider, "rider-requested");

  const offer = `#offers li[data-trip="${tripId}"]`;
  await driverA.waitForSelector(`${offer} >> text=/\\d+\\.\\d\\d/`);
  await snap(driverA, "driver-offer-on-map");
  await driverA.click(`${offer} button.accept`);
  await statusIs(driverA, "STARTED");
  await statusIs(rider, "STARTED");
  await rider.waitForSelector("#eta[data-seconds]");
  await recordEtas(rider);
  await snap(rider, "rider-eta");
  await driverA.click("#drive");
  await rider.waitForSelector("#trip-status[data-arrived=yes]");
  await rider.waitForSelector("#trip-status >> text=Your driver is here");
  const etas = await rider.evaluate(() => window.etas);
  check(etas.length >= 2 && etas.at(-1) < etas[0], `the ETA did not fall: ${etas}`);
  await driverA.waitForSelector("#message >> text=At the pick-up.");
  await snap(rider, "rider-driver-is-here");
  await snap(driverA, "driver-at-pick-up");

  await driverA.click("#step");
  await statusIs(rider, "IN_PROGRESS");
  await driverA.click("#drive");
  await driverA.waitForSelector("#message >> text=At the drop-off.");
  await driverA.click("#step");
  await statusIs(driverA, "COMPLETED");
  await statusIs(rider, "COMPLETED");
  await rider.waitForSelector("#receipt[data-amount]");
  check(price > 700, `the price ${price} is FARE_MINIMUM's: the ride is too short to check the tariff`);
  const paid = Number(await attr(rider, "#receipt", "data-amount"));
  const fare = (await query(rider, FARE, { id: tripId })).trip.fare;
  check(fare.quoted.amount === price, `fare.quoted ${fare.quoted.amount} != the price shown ${price}`);
  check(paid === price && fare.final.amount === price, `receipt ${paid} / final ${fare.final.amount} != quoted ${price}`);
  await snap(rider, "rider-receipt");
  await driverA.waitForSelector(`#earned-today[data-trips='1'][data-amount='${price}']`);
  await snap(driverA, "driver-earnings");
  await rider.click("[data-rating='5']");
  await rider.waitForSelector("#trip-status >> text=You rated this ride 5★");
  console.log(`quoted ride: price ${price} == fare.quoted == receipt; ETAs ${etas.join(" → ")}`);
}

// 2. Plan another ride starts with the pick-up; a driver gives the trip back, another
// driver (online since) gets it; 3. that driver waits and reports a no-show.
async function releaseAndNoShow(driverA, driverB, rider) {
  await rider.click("#again");
  await rider.waitForSelector("#pin-next >> text=pick-up");
  check(await rider.isDisabled("#request"), "Request enabled with no pick-up");
  await plan(rider, [[-120, 90], [150, -120]], ["City Hall", "Park Gate"]);
  check((await rider.inputValue("#pick-up")).length > 0, "the pick-up field is empty");
  await rider.click("#request");
  await statusIs(rider, "REQUESTED");
  const tripId = await attr(rider, "#ride", "data-trip");
  await driverA.click(`#offers li[data-trip="${tripId}"] button.accept`);
  await statusIs(rider, "STARTED");

  await goOnline(driverB, "Central Station");
  const released = Date.now();
  await driverA.click("#release");
  await statusIs(driverA, "REQUESTED");
  await statusIs(rider, "REQUESTED");
  await rider.waitForSelector("#message >> text=had to give the trip back");
  await snap(driverA, "driver-gave-trip-back");
  await snap(rider, "rider-trip-offered-again");
  await driverB.waitForSelector(`#offers li[data-trip="${tripId}"] button.accept`);
  console.log(`re-dispatch: click on "Give the trip back" to the offer on the other driver's screen ${Date.now() - released} ms`);
  await snap(driverB, "second-driver-offer");
  await driverB.click(`#offers li[data-trip="${tripId}"] button.accept`);
  await statusIs(rider, "STARTED");
  await rider.waitForSelector("#trip-driver >> text=Bea");
  check(!(await driverA.$(`#offers li[data-trip="${tripId}"]`)), "the trip came back to the driver who gave it back");

  await driverB.click("#drive");
  await driverB.waitForSelector("#message >> text=At the pick-up.");
  await rider.waitForSelector("#trip-status >> text=Your driver is here");
  await driverB.waitForSelector("#no-show:disabled");
  await snap(driverB, "driver-waits-for-rider");
  await driverB.waitForSelector("#no-show:enabled");
  await driverB.click("#no-show");
  await reasonIs(rider, "RIDER_NO_SHOW");
  await statusIs(driverB, "CANCELED");
  await rider.waitForSelector("#receipt[data-amount]");
  await snap(driverB, "driver-no-show");
  await snap(rider, "rider-no-show");
}

// 4. With no car nearby the rider is told before requesting; the request expires.
async function expiry(driverA, driverB, rider) {
  for (const driver of [driverA, driverB]) {
    await driver.click("#go-offline");
    await driver.waitForSelector("#availability >> text=OFFLINE");
  }
  await rider.click("#again");
  await plan(rider, [[60, -60], [-150, 120]], ["Museum", "Market Square"]);
  await rider.waitForSelector("#cars[data-cars='0'] >> text=No cars nearby right now");
  await snap(rider, "rider-no-cars");
  const requested = Date.now();
  await rider.click("#request");
  await statusIs(rider, "REQUESTED");
  await reasonIs(rider, "NO_DRIVER_FOUND");
  console.log(`expiry: request to "No driver found" on screen ${Date.now() - requested} ms`);
  await rider.waitForSelector("#trip-status >> text=No driver found");
  await snap(rider, "rider-no-driver-found");
}

// 5. The session ends elsewhere (log-out in another tab): the socket closes with 4403;
// the page says why, shows the log-in form and opens no socket again.
async function signedOutElsewhere(rider) {
  const refresh = await rider.evaluate(() => JSON.parse(sessionStorage.getItem("taxi.session")).refresh);
  let sockets = 0;
  rider.on("websocket", () => (sockets += 1));
  const other = await rider.context().request.post(base + "/graphql", {
    data: { query: "mutation Out($r: String!) { logOut(refresh: $r) }", variables: { r: refresh } },
  });
  check((await other.json()).data.logOut === true, "logOut elsewhere failed");
  await rider.waitForSelector("#auth", { state: "visible" });
  await rider.waitForSelector("#message >> text=Your session has ended");
  await snap(rider, "rider-session-ended");
  return () => sockets;
}

// 6. A rider with the keyboard only: sign up, type both ends, request.
async function keyboardRider() {
  const page = await open("keyboard rider");
  await page.goto(base + "/app/rider.html");
  await tabTo(page, "#auth input[name=username]");
  await page.keyboard.type(`keys_${suffix}`);
  await page.keyboard.press("Tab");
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press("Tab");
  await page.keyboard.type("Kim");
  await page.keyboard.press("Tab");
  await page.keyboard.type("Keys");
  await tabTo(page, "#sign-up");
  await page.keyboard.press("Enter");
  await page.waitForSelector("#plan", { state: "visible" });
  await tabTo(page, "#pick-up");
  await page.keyboard.type("City Hall");
  await page.keyboard.press("Tab");
  await page.waitForSelector("#pin-next >> text=drop-off");
  // The drop-off with the map's keyboard cursor: two blocks east of the centre, Enter.
  await tabTo(page, "#map");
  await page.keyboard.press("ArrowRight");
  await page.keyboard.press("ArrowRight");
  await snap(page, "keyboard-rider-map-cursor");
  await page.keyboard.press("Enter");
  await page.waitForSelector("#quote[data-amount]");
  await snap(page, "keyboard-rider-plans");
  await tabTo(page, "#request");
  await page.keyboard.press("Enter");
  await statusIs(page, "REQUESTED");
  await snap(page, "keyboard-rider-requested");
  return page;
}

// 7. An admin deactivates that rider (the test does it server-side, asked on stdout): the
// page stops, says why, and the account can no longer log in; its open trip ended with it.
async function deactivated(page) {
  const { id } = await page.evaluate(() => JSON.parse(sessionStorage.getItem("taxi.session")).user);
  let sockets = 0;
  page.on("websocket", () => (sockets += 1));
  console.log(`deactivate ${id}`);
  await page.waitForSelector("#auth", { state: "visible" });
  await page.waitForSelector("#message >> text=Your session has ended");
  await snap(page, "deactivated-rider-stopped");
  await page.fill("#auth input[name=username]", `keys_${suffix}`);
  await page.fill("#auth input[name=password]", PASSWORD);
  await page.click("#log-in");
  await page.waitForSelector("#message >> text=Invalid username or password");
  await snap(page, "deactivated-rider-cannot-log-in");
  return () => sockets;
}

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
// SCENARIO=token-expiry (a server with a short ACCESS_TOKEN_TTL): the socket the token
// opened is closed with 4403 when it expires, and the page reconnects with a fresh token,
// still signed in, instead of ending the session as it does when the refresh is refused.
async function tokenExpiry() {
  const driver = await open("driver");
  let opened = 0;
  let firstClosed = false;
  const reconnected = new Promise((resolve) => {
    driver.on("websocket", (ws) => {
      const n = ++opened;
      ws.on("close", () => n === 1 && (firstClosed = true));
      ws.on("framereceived", (f) => {
        if (n > 1 && firstClosed && String(f.payload).includes("connection_ack")) resolve(n);
      });
    });
  });
  await signUp(driver, `${base}/app/driver.html`, { username: `tess_${suffix}`, first: "Tess" });
  await goOnline(driver, "Central Station");
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error("no reconnection after the token expired")), TIMEOUT_MS * 2);
  });
  const n = await Promise.race([reconnected, timeout]).finally(() => clearTimeout(timer));
  check(await driver.isVisible("#log-out"), "signed out after a token expired");
  check(!(await driver.isVisible("#auth")), "the log-in form is back after a token expired");
  await snap(driver, "driver-reconnected-after-token-expiry");
  console.log(`token expiry: socket ${n} acknowledged after the first one closed; still signed in`);
}

async function rides() {
  if (!PHONE) await graphiql();
  const driverA = await open("driver A");
  const driverB = await open("driver B");
  const rider = await open("rider");
  await signUp(driverA, `${base}/app/driver.html?tick=60`, { username: `dora_${suffix}`, first: "Dora", photo: "#0f766e" });
  await goOnline(driverA, "Central Station");
  await snap(driverA, "driver-online");
  await signUp(driverB, `${base}/app/driver.html?tick=60`, { username: `bea_${suffix}`, first: "Bea" });
  await signUp(rider, `${base}/app/rider.html`, { username: `ross_${suffix}`, first: "Ross", photo: "#7c3aed" });

  await quotedRide(driverA, rider);
  await releaseAndNoShow(driverA, driverB, rider);
  await expiry(driverA, driverB, rider);
  const sockets = await signedOutElsewhere(rider);
  const gone = await deactivated(await keyboardRider());
  check(sockets() === 0, `the signed-out page opened ${sockets()} socket(s) again`);
  check(gone() === 0, `the deactivated rider's page opened ${gone()} socket(s) again`);
  await snap(rider, "rider-still-signed-out");
}

try {
  if (process.env.SCENARIO === "token-expiry") await tokenExpiry();
  else await rides();
} catch (err) {
  problems.push(`step failed: ${err.message}`);
  for (const [page, who] of pages) if (!page.isClosed()) await snap(page, `FAILED-${who.replace(/ /g, "-")}`).catch(() => {});
} finally {
  await browser.close();
}
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log(`${process.env.SCENARIO || "rides"} complete (${SCREEN})`);
