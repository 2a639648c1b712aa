// The web app's flows for browser.mjs, one function per thing a person does on /app/:
// sign up (optionally with a photo), place a point by clicking, typing or the keyboard,
// read what the page says. Every wait is on what the page shows, never on time.

export const PASSWORD = "correct-horse-9";

// A PNG portrait drawn by the page's own canvas (no image file in the repository).
export async function portrait(page, color) {
  const dataUrl = await page.evaluate((fill) => {
    const c = document.createElement("canvas");
    c.width = c.height = 96;
    const ctx = c.getContext("2d");
    ctx.fillStyle = fill;
    ctx.fillRect(0, 0, 96, 96);
    ctx.fillStyle = "#fff";
    ctx.beginPath();
    ctx.arc(48, 38, 20, 0, 2 * Math.PI);
    ctx.arc(48, 100, 36, 0, 2 * Math.PI);
    ctx.fill();
    return c.toDataURL("image/png");
  }, color);
  return { name: "me.png", mimeType: "image/png", buffer: Buffer.from(dataUrl.split(",")[1], "base64") };
}

export async function signUp(page, url, { username, first, photo = null }) {
  await page.goto(url);
  await page.fill("#auth input[name=username]", username);
  await page.fill("#auth input[name=password]", PASSWORD);
  await page.fill("#auth input[name=firstName]", first);
  await page.fill("#auth input[name=lastName]", "Tester");
  if (photo) await page.setInputFiles("#auth input[name=photo]", await portrait(page, photo));
  await page.click("#sign-up");
  await page.waitForSelector("#log-out", { state: "visible" });
  if (photo) await page.waitForFunction(() => document.querySelector("#photo").naturalWidth > 0);
  else await page.waitForSelector("#initial", { state: "visible" });
}

export async function clickMap(page, dx, dy) {
  const box = await page.locator("#map").boundingBox();
  // The centre of what the sheet leaves visible (phones), else of the map.
  const covered = await page.evaluate(() => {
    const map = document.querySelector("#map").getBoundingClientRect();
    const aside = document.querySelector("aside").getBoundingClientRect();
    return aside.left <= map.left + 1 && aside.right >= map.right - 1 ? Math.max(0, map.bottom - aside.top) : 0;
  });
  await page.mouse.click(box.x + box.width / 2 + dx, box.y + (box.height - covered) / 2 + dy);
}

// Types an address into a field and leaves it (the change picks the point).
export async function typeAddress(page, selector, text) {
  await page.fill(selector, text);
  await page.press(selector, "Tab");
}

// Presses Tab until `selector` has the focus (at most `limit` times): reachable by keyboard.
export async function tabTo(page, selector, limit = 30) {
  for (let k = 0; k < limit; k++) {
    await page.keyboard.press("Tab");
    if (await page.evaluate((s) => document.activeElement && document.activeElement.matches(s), selector)) return;
  }
  throw new Error(`${selector} not reached with ${limit} Tab presses`);
}

export const statusIs = (page, value) => page.waitForSelector(`#trip-status[data-status="${value}"]`);
export const reasonIs = (page, value) => page.waitForSelector(`#trip-status[data-reason="${value}"]`);

export async function attr(page, selector, name) {
  return page.getAttribute(selector, name);
}

// Records every value the rider's ETA shows (a MutationObserver in the page), so a quick
// drive cannot slip a falling ETA past the test.
export async function recordEtas(page) {
  await page.evaluate(() => {
    window.etas = [];
    const el = document.querySelector("#eta");
    new MutationObserver(() => {
      if (el.dataset.seconds) window.etas.push(Number(el.dataset.seconds));
    }).observe(el, { attributes: true, attributeFilter: ["data-seconds"] });
    if (el.dataset.seconds) window.etas.push(Number(el.dataset.seconds));
  });
}

// Records each label `selector` shows while disabled (a request in flight), so a quick
// answer cannot slip the busy state past the test.
export async function recordBusy(page, selector) {
  await page.evaluate((sel) => {
    window.busy = [];
    const el = document.querySelector(sel);
    new MutationObserver(() => {
      if (el.disabled) window.busy.push(el.textContent);
    }).observe(el, { attributes: true, childList: true, characterData: true, subtree: true });
  }, selector);
}

// A query in the page with its own session (the app's module, so its token and refresh).
export async function query(page, text, variables = {}) {
  return page.evaluate(
    async ([q, v]) => (await import("/app/api.js")).gql(q, v),
    [text, variables],
  );
}
