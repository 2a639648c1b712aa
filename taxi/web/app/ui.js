// What every page does to its own DOM: find, show and hide, say something (to the eye and,
// through the aria-live region, to a screen reader), and show a request in flight.

export const $ = (sel) => document.querySelector(sel);

export function show(el, visible) {
  el.hidden = !visible;
}

// Sets `el`'s text only when it changes: an aria-live region re-announces any rewrite, and
// an arrival time rewritten on every position would never stop talking.
export function say(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

// #message is role="status" aria-live="polite": each change is read out once.
export function status(text, error = false) {
  const el = $("#message");
  el.textContent = text;
  el.className = error ? "message error" : "message";
}

// Runs `work` with `button` disabled and labelled `label` ("Requesting…") meanwhile, so a
// second click cannot send it twice; the label comes back however the request ends. A
// failure is shown (with `explain` choosing the words) and not rethrown.
export async function busy(button, label, work, explain = (err) => err.message) {
  const idle = button.textContent;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.textContent = label;
  try {
    return await work();
  } catch (err) {
    status(explain(err), true);
    return undefined;
  } finally {
    button.textContent = idle;
    button.removeAttribute("aria-busy");
    button.disabled = false;
  }
}

// Wires `button` to busy(button, label, work) on click.
export function onClick(button, label, work, explain) {
  button.addEventListener("click", () => busy(button, label, work, explain));
}
