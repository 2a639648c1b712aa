// Tokens for the JavaScript guides: log in once, then a fresh access token on demand.
// Refresh tokens are single use (a replayed one ends the whole session), so one refresh
// at a time, shared by every caller.
const HTTP_URL = process.env.TAXI_URL ?? "http://127.0.0.1:8000/graphql";
const REFRESH_MARGIN_MS = 30_000; // refresh this long before the access token expires

let tokens = null;
let refreshing = null;

async function call(query, variables) {
  const response = await fetch(HTTP_URL, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ query, variables }),
  });
  const { data, errors } = await response.json();
  if (errors) throw new Error(`${errors[0].extensions?.code}: ${errors[0].message}`);
  return data;
}

export async function logIn(username, password) {
  const data = await call(
    "mutation ($u: String!, $p: String!) { logIn(username: $u, password: $p) { access refresh } }",
    { u: username, p: password },
  );
  tokens = data.logIn;
}

function msLeft(jwt) {
  const payload = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(payload)).exp * 1000 - Date.now();
}

export async function accessToken() {
  if (msLeft(tokens.access) > REFRESH_MARGIN_MS) return tokens.access;
  refreshing ??= call("mutation ($r: String!) { refreshToken(refresh: $r) { access refresh } }", {
    r: tokens.refresh,
  })
    .then((data) => {
      tokens = data.refreshToken;
      console.log("refreshed");
    })
    .finally(() => {
      refreshing = null;
    });
  await refreshing;
  return tokens.access;
}
