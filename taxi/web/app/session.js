// This tab's session: the tokens (sessionStorage, so a rider tab and a driver tab stay
// apart), refreshed before they expire, and ended when the server stops honouring them.
import { ApiError, post } from "./http.js";

const KEY = "taxi.session";
const ENDED = "taxi.ended"; // why the last session ended, for the log-in form to say
const REFRESH_MARGIN_MS = 15000; // refresh an access token this long before it expires

const USER = "user { id username firstName group photoUrl }";
const REFRESH = `mutation Refresh($refresh: String!) {
  refreshToken(refresh: $refresh) { access refresh ${USER} } }`;
export const LOG_IN = `mutation LogIn($username: String!, $password: String!) {
  logIn(username: $username, password: $password) { access refresh ${USER} } }`;
const LOG_OUT = `mutation LogOut($refresh: String!) { logOut(refresh: $refresh) }`;

export const SESSION_ENDED =
  "Your session has ended: you were signed out, or your account was deactivated. Log in again.";

export function session() {
  return JSON.parse(sessionStorage.getItem(KEY) || "null");
}

export function save(value) {
  if (value) sessionStorage.setItem(KEY, JSON.stringify(value));
  else sessionStorage.removeItem(KEY);
}

function claims(token) {
  const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(part));
}

let ended = false;

export const sessionEnded = () => ended;

// Forgets the session and reloads: every timer and socket of the page stops with it, and
// the log-in form comes back saying `reason`.
export function endSession(reason) {
  ended = true;
  save(null);
  if (reason) sessionStorage.setItem(ENDED, reason);
  location.reload();
}

// Why the previous session ended (once), or null.
export function takeEndedReason() {
  const reason = sessionStorage.getItem(ENDED);
  sessionStorage.removeItem(ENDED);
  return reason;
}

let refreshing = null;

// A valid access token, refreshed (once, for every caller) when it is about to expire, or
// at once with `force` (the server refused the current one). A refresh the server refuses
// ends the session; a network failure does not (the next attempt may get through).
export async function accessToken({ force = false } = {}) {
  const current = session();
  if (!current) throw new ApiError({ message: "Not signed in.", extensions: { code: "UNAUTHENTICATED" } });
  if (!force && claims(current.access).exp * 1000 - Date.now() > REFRESH_MARGIN_MS) return current.access;
  refreshing ??= post(REFRESH, { refresh: current.refresh })
    .then((data) => {
      save({ ...data.refreshToken });
      return data.refreshToken.access;
    })
    .catch((err) => {
      if (err instanceof ApiError && err.code === "UNAUTHENTICATED") endSession(SESSION_ENDED);
      throw err;
    })
    .finally(() => {
      refreshing = null;
    });
  return refreshing;
}

// Ends the session on the server too (its open sockets close), then here.
export async function logOut() {
  const current = session();
  if (current) await post(LOG_OUT, { refresh: current.refresh }).catch(() => false);
  endSession(null);
}
