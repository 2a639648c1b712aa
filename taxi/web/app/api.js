// The signed-in API: queries and mutations over HTTP, subscriptions over one graphql-ws
// socket whose every (re)connect sends a fresh token. A 4403 close (token expired, session
// ended, account deactivated) forces a refresh; when that is refused too the session ends
// and the page stops reconnecting (session.js), instead of retrying every few seconds.
import { createClient } from "../vendor/graphql-ws.js";
import { ApiError, post } from "./http.js";
import { accessToken, sessionEnded } from "./session.js";
import { status } from "./ui.js";

export const WS_URL = location.origin.replace(/^http/, "ws") + "/graphql";
const FORBIDDEN = 4403;

export async function gql(query, variables = {}) {
  try {
    return await post(query, variables, await accessToken());
  } catch (err) {
    // Refused although unexpired here: revoked, or the clocks disagree. One forced refresh
    // tells which (a refused refresh ends the session).
    if (!(err instanceof ApiError) || err.code !== "UNAUTHENTICATED") throw err;
    return post(query, variables, await accessToken({ force: true }));
  }
}

let client = null;
let refused = false; // the last socket was closed with 4403

// Before reconnecting: after a 4403 the token is refreshed first, so a session that ended
// opens no new socket at all (the refused refresh reloads the page into its log-in form);
// otherwise graphql-ws's own randomised exponential back-off.
async function retryWait(retries) {
  if (refused) {
    refused = false;
    try {
      await accessToken({ force: true });
      return;
    } catch {
      if (sessionEnded()) await new Promise(() => {}); // the page is reloading
    }
  }
  const ms = Math.min(1000 * 2 ** retries, 30000) + 300 + Math.random() * 2700;
  await new Promise((resolve) => setTimeout(resolve, ms));
}

function ws() {
  client ??= createClient({
    url: WS_URL,
    connectionParams: async () => ({ Authorization: "Bearer " + (await accessToken()) }),
    retryAttempts: Infinity,
    shouldRetry: () => !sessionEnded(),
    retryWait,
    on: {
      closed: (event) => {
        if (event && event.code === FORBIDDEN) refused = true;
      },
    },
  });
  return client;
}

// Calls onData with each result's data; returns a function that stops the subscription.
export function subscribe(query, variables, onData) {
  return ws().subscribe(
    { query, variables },
    {
      next: (result) => {
        if (result.errors) status(result.errors[0].message, true);
        else onData(result.data);
      },
      error: (err) => status(err.message || `Connection closed (${err.code || "?"})`, true),
      complete: () => {},
    },
  );
}

export async function config() {
  return (await fetch("/app/config.json")).json();
}
