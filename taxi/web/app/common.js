// What both pages share: the session (per tab), GraphQL over HTTP, one graphql-ws client
// whose connectionParams refresh the token, and the sign-up / log-in form.
import { createClient } from "../vendor/graphql-ws.js";

const KEY = "taxi.session"; // sessionStorage: a rider tab and a driver tab stay apart
const REFRESH_MARGIN_MS = 15000; // refresh an access token this long before it expires
export const WS_URL = location.origin.replace(/^http/, "ws") + "/graphql";

export class ApiError extends Error {
  constructor(error) {
    super(error.message);
    this.code = error.extensions && error.extensions.code;
    this.fields = error.extensions && error.extensions.fields;
  }
}

export const $ = (sel) => document.querySelector(sel);

export function show(el, visible) {
  el.hidden = !visible;
}

export function session() {
  return JSON.parse(sessionStorage.getItem(KEY) || "null");
}

function save(value) {
  if (value) sessionStorage.setItem(KEY, JSON.stringify(value));
  else sessionStorage.removeItem(KEY);
}

function claims(token) {
  const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(part));
}

async function post(query, variables, token) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch("/graphql", {
    method: "POST",
    headers,
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors && body.errors.length) throw new ApiError(body.errors[0]);
  return body.data;
}

const REFRESH = `mutation Refresh($refresh: String!) {
  refreshToken(refresh: $refresh) { access refresh user { id username firstName group } } }`;
let refreshing = null;

// A valid access token, refreshed (once, for every caller) when it is about to expire.
export async function accessToken() {
  const current = session();
  if (!current) throw new ApiError({ message: "Not signed in", extensions: { code: "UNAUTHENTICATED" } });
  if (claims(current.access).exp * 1000 - Date.now() > REFRESH_MARGIN_MS) return current.access;
  refreshing ??= post(REFRESH, { refresh: current.refresh })
    .then((data) => {
      save({ ...data.refreshToken });
      return data.refreshToken.access;
    })
    .catch((err) => {
      save(null);
      location.reload();
      throw err;
    })
    .finally(() => {
      refreshing = null;
    });
  return refreshing;
}

export async function gql(query, variables = {}) {
  return post(query, variables, await accessToken());
}

let client = null;

function ws() {
  // connectionParams is a function: every (re)connect, e.g. after the server closed the
  // socket with 4403 because the token expired, sends a fresh token.
  client ??= createClient({
    url: WS_URL,
    connectionParams: async () => ({ Authorization: "Bearer " + (await accessToken()) }),
    retryAttempts: Infinity,
    shouldRetry: () => true,
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

export function status(text, error = false) {
  const el = $("#message");
  el.textContent = text;
  el.className = error ? "message error" : "message";
}

const SIGN_UP = `mutation SignUp($input: SignUpInput!) { signUp(input: $input) { id } }`;
const LOG_IN = `mutation LogIn($username: String!, $password: String!) {
  logIn(username: $username, password: $password) { access refresh user { id username firstName group } } }`;

// The sign-up / log-in form; resolves with the user once signed in as `group`.
export function signIn(group) {
  const current = session();
  if (current && current.user.group === group) return Promise.resolve(current.user);
  save(null);
  show($("#auth"), true);
  return new Promise((resolve) => {
    const form = $("#auth form");
    const submit = async (event, signUp) => {
      event.preventDefault();
      const f = new FormData(form);
      const username = f.get("username");
      const password = f.get("password");
      try {
        if (signUp) {
          await post(SIGN_UP, {
            input: {
              username,
              firstName: f.get("firstName") || username,
              lastName: f.get("lastName") || "",
              password1: password,
              password2: password,
              group,
            },
          });
        }
        const data = await post(LOG_IN, { username, password });
        if (data.logIn.user.group !== group) {
          status(`${username} is a ${data.logIn.user.group.toLowerCase()}: use the other page.`, true);
          return;
        }
        save(data.logIn);
        show($("#auth"), false);
        status("");
        resolve(data.logIn.user);
      } catch (err) {
        const fields = err.fields
          ? " " + Object.entries(err.fields).map(([k, v]) => `${k}: ${v.join(" ")}`).join(" ")
          : "";
        status(err.message + fields, true);
      }
    };
    form.addEventListener("submit", (e) => submit(e, false));
    $("#sign-up").addEventListener("click", (e) => submit(e, true));
  });
}

export function wireLogOut() {
  $("#log-out").addEventListener("click", () => {
    save(null);
    location.reload();
  });
}

export async function config() {
  return (await fetch("/app/config.json")).json();
}
