// The signed-in API: queries and mutations over HTTP, subscriptions over one graphql-ws
// socket whose every (re)connect sends a fresh token. A 4403 close (token expired, session
// ended, account deactivated) forces a refresh; when that is refused too the session ends
// and the page stops reconnecting (session.js), instead of retrying every few seconds.
import { createClient } from "../vendor/graphql-ws.js";
import { ApiError, post } from "./http.js";
import { accessToken } from "./session.js";
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

function ws() {
  client ??= createClient({
    url: WS_URL,
    connectionParams: async () => {
      const token = await accessToken({ force: refused });
      refused = false;
      return { Authorization: "Bearer " + token };
    },
    retryAttempts: Infinity,
    shouldRetry: () => true,
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
