// A whole ride against a live taxi server, driven by the real JavaScript clients:
// the `graphql-ws` client (driver), Apollo Client with GraphQLWsLink (rider), and the
// legacy `subscriptions-transport-ws` client (the driver following the trip).
//
//   node ride.mjs [HTTP_URL] [WS_URL]
//
// HTTP_URL defaults to $TAXI_URL or http://127.0.0.1:8000 ("/graphql" is appended when
// missing); WS_URL defaults to $TAXI_WS_URL or the HTTP URL with ws(s)://. Exits 0 when
// the ride went as expected, 1 with a message on any failure, 2 on the overall timeout
// ($RIDE_TIMEOUT_MS, 20000 by default).

import { randomBytes } from "node:crypto";

import { ApolloClient, HttpLink, InMemoryCache, gql, split } from "@apollo/client";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { getMainDefinition } from "@apollo/client/utilities";
import { createClient } from "graphql-ws";
import legacyTransport from "subscriptions-transport-ws";
import WebSocket from "ws";

const { SubscriptionClient } = legacyTransport;

// GraphQLWsLink's error mapping reads the global `WebSocket` (isLikeErrorEvent), which
// Node 20 lacks: without it every GraphQL error of a subscription becomes
// "ReferenceError: WebSocket is not defined" and the socket is closed with 4004.
globalThis.WebSocket ??= WebSocket;

const TIMEOUT_MS = Number(process.env.RIDE_TIMEOUT_MS || 20000);
const STEP_MS = Number(process.env.RIDE_STEP_MS || 5000);
const PASSWORD = "correct-horse-9";

function graphqlUrl(url) {
  const trimmed = url.replace(/\/+$/, "");
  return trimmed.endsWith("/graphql") ? trimmed : `${trimmed}/graphql`;
}

const HTTP_URL = graphqlUrl(process.argv[2] || process.env.TAXI_URL || "http://127.0.0.1:8000");
const WS_URL = graphqlUrl(
  process.argv[3] || process.env.TAXI_WS_URL || HTTP_URL.replace(/^http/, "ws"),
);

const started = Date.now();
function log(message) {
  const ms = String(Date.now() - started).padStart(5);
  process.stdout.write(`[ride ${ms} ms] ${message}\n`);
}

class RideError extends Error {}

function fail(message) {
  throw new RideError(message);
}

const overall = setTimeout(() => {
  process.stderr.write(`ride.mjs: TIMEOUT: the ride did not finish within ${TIMEOUT_MS} ms\n`);
  process.exit(2);
}, TIMEOUT_MS);

// --- Plain HTTP (fetch): sign-up, log-in and the driver's mutations -----------------------

async function post(query, variables, token) {
  const headers = { "content-type": "application/json", accept: "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const name = /(?:query|mutation)\s+(\w+)/.exec(query)?.[1] ?? "operation";
  let response;
  try {
    response = await fetch(HTTP_URL, {
      method: "POST",
      headers,
      body: JSON.stringify({ query, variables }),
    });
  } catch (err) {
    fail(`${name}: POST ${HTTP_URL} failed: ${err.cause?.message ?? err.message}`);
  }
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    fail(`HTTP ${response.status} from ${HTTP_URL} is not JSON: ${text.slice(0, 500)}`);
  }
  if (!response.ok || body.errors?.length) {
    fail(`${name}: HTTP ${response.status}: ${JSON.stringify(body.errors ?? body)}`);
  }
  return body.data;
}

const TRIP_FIELDS = `
  id status pickUpAddress dropOffAddress
  rider { id username } driver { id username }
  driverLocation { latitude longitude heading recordedAt }
`;

async function account(group) {
  const username = `js_${group.toLowerCase()}_${randomBytes(5).toString("hex")}`;
  const signUp = await post(
    `mutation SignUp($input: SignUpInput!) { signUp(input: $input) { id username group } }`,
    {
      input: {
        username,
        firstName: "Js",
        lastName: group === "RIDER" ? "Rider" : "Driver",
        password1: PASSWORD,
        password2: PASSWORD,
        group,
      },
    },
  );
  if (signUp.signUp.group !== group) fail(`signUp returned ${JSON.stringify(signUp)}`);
  const logIn = await post(
    `mutation LogIn($username: String!, $password: String!) {
      logIn(username: $username, password: $password) { access refresh user { id username } }
    }`,
    { username, password: PASSWORD },
  );
  const { access, user } = logIn.logIn;
  if (!access || user.username !== username) fail(`logIn returned ${JSON.stringify(logIn)}`);
  return { id: user.id, username, token: access };
}

// --- A stream of subscription events that steps can wait on -------------------------------

class Stream {
  constructor(label) {
    this.label = label;
    this.items = [];
    this.seen = [];
    this.waiter = null;
    this.failure = null;
    this.done = false;
  }

  push(item) {
    this.items.push(item);
    this.seen.push(item);
    this.wake();
  }

  error(err) {
    this.failure = err;
    this.wake();
  }

  complete() {
    this.done = true;
    this.wake();
  }

  wake() {
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.();
  }

  // The next item matching `predicate` (items that do not match are skipped).
  async next(what, predicate = () => true, ms = STEP_MS) {
    const deadline = Date.now() + ms;
    for (;;) {
      while (this.items.length) {
        const item = this.items.shift();
        if (predicate(item)) return item;
      }
      if (this.failure) fail(`${this.label}: ${describe(this.failure)} (waiting for ${what})`);
      if (this.done) fail(`${this.label}: completed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) {
        fail(`${this.label}: no ${what} within ${ms} ms; got ${JSON.stringify(this.seen)}`);
      }
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
}

async function within(promise, what, ms = STEP_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new RideError(`no ${what} within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function describe(err) {
  if (Array.isArray(err)) return `GraphQL errors ${JSON.stringify(err)}`;
  if (err instanceof Error) {
    const extra = err.errors ? ` ${JSON.stringify(err.errors)}` : "";
    return `${err.name}: ${err.message}${extra}`;
  }
  if (err && typeof err === "object" && "code" in err && "reason" in err) {
    return `socket closed with ${err.code} ${err.reason || ""}`.trim();
  }
  return String(err);
}

// --- The ride ---------------------------------------------------------------------------

const cleanups = [];
let finished = false;

async function ride() {
  log(`server ${HTTP_URL} / ${WS_URL}`);
  const rider = await account("RIDER");
  const driver = await account("DRIVER");
  log(`signed up and logged in rider ${rider.username} and driver ${driver.username}`);

  // Driver: the graphql-ws client, auth in connection_init.
  const requests = new Stream("driver tripRequested (graphql-ws)");
  let acked = false;
  const driverWs = createClient({
    url: WS_URL,
    webSocketImpl: WebSocket,
    connectionParams: () => ({ authToken: driver.token }),
    lazy: false,
    retryAttempts: 0,
    onNonLazyError: (err) => requests.error(err),
  });
  cleanups.push(() => driverWs.dispose());
  const connected = new Promise((resolve, reject) => {
    driverWs.on("connected", () => {
      acked = true;
      resolve();
    });
    driverWs.on("closed", (event) => {
      if (!acked) reject(new RideError(`driver socket: ${describe(event)} before connection_ack`));
      else if (!finished) requests.error(event);
    });
  });
  driverWs.subscribe(
    { query: `subscription Requested { tripRequested { ${TRIP_FIELDS} } }` },
    {
      next: (result) => (result.errors ? requests.error(result.errors) : requests.push(result)),
      error: (err) => requests.error(err),
      complete: () => requests.complete(),
    },
  );
  await within(connected, "driver connection_ack");
  log("driver connected (graphql-ws) and subscribed to tripRequested");

  // Rider: Apollo Client, HTTP for queries and mutations, GraphQLWsLink for subscriptions.
  const riderWs = createClient({
    url: WS_URL,
    webSocketImpl: WebSocket,
    connectionParams: () => ({ authToken: rider.token }),
    retryAttempts: 0,
  });
  cleanups.push(() => riderWs.dispose());
  const link = split(
    ({ query }) => {
      const definition = getMainDefinition(query);
      return (
        definition.kind === "OperationDefinition" && definition.operation === "subscription"
      );
    },
    new GraphQLWsLink(riderWs),
    new HttpLink({ uri: HTTP_URL, headers: { Authorization: `Bearer ${rider.token}` } }),
  );
  const apollo = new ApolloClient({ link, cache: new InMemoryCache() });
  cleanups.push(() => apollo.stop());

  function apolloStream(label, query, variables) {
    const stream = new Stream(label);
    const subscription = apollo.subscribe({ query, variables }).subscribe({
      next: (result) => (result.error ? stream.error(result.error) : stream.push(result.data)),
      error: (err) => stream.error(err),
      complete: () => stream.complete(),
    });
    cleanups.push(() => subscription.unsubscribe());
    return stream;
  }

  const REQUEST = gql`
    mutation Request($input: RequestTripInput!) { requestTrip(input: $input) { ${TRIP_FIELDS} } }
  `;
  const CANCEL = gql`mutation Cancel($id: ID!) { cancelTrip(id: $id) { id status } }`;

  // tripRequested has no "subscribed" acknowledgement, and the server may register it a
  // moment after the subscribe message. A rider has one active trip at a time, so on a
  // miss the rider cancels and requests again, until the driver hears one.
  let trip;
  for (let attempt = 1; attempt <= 5 && !trip; attempt++) {
    const { data } = await apollo.mutate({
      mutation: REQUEST,
      variables: {
        input: { pickUpAddress: `${attempt} Node street`, dropOffAddress: "1 GraphQL avenue" },
      },
    });
    const made = data.requestTrip;
    if (made.status !== "REQUESTED" || made.rider?.id !== rider.id) {
      fail(`requestTrip returned ${JSON.stringify(made)}`);
    }
    log(`rider requested trip ${made.id} over HTTP (Apollo Client), attempt ${attempt}`);
    try {
      // Other riders' trips may arrive too (a shared Redis): wait for this one.
      const heard = await requests.next(
        `tripRequested for trip ${made.id}`,
        (r) => r.data?.tripRequested?.id === made.id,
        attempt === 5 ? STEP_MS : 1000,
      );
      trip = heard.data.tripRequested;
    } catch (err) {
      if (!(err instanceof RideError) || requests.failure || attempt === 5) throw err;
      log(`driver did not hear trip ${made.id}; the rider cancels it and asks again`);
      await apollo.mutate({ mutation: CANCEL, variables: { id: made.id } });
    }
  }
  if (trip.status !== "REQUESTED" || trip.rider?.username !== rider.username) {
    fail(`tripRequested delivered ${JSON.stringify(trip)}`);
  }
  log(`driver received trip ${trip.id} through tripRequested`);

  // Rider follows the trip; its current state comes first, so the stream is live after it.
  const updates = apolloStream(
    "rider tripUpdated (Apollo Client)",
    gql`subscription Updated($id: ID!) { tripUpdated(id: $id) { ${TRIP_FIELDS} } }`,
    { id: trip.id },
  );
  const statuses = [];
  async function expectStatus(status) {
    const item = await updates.next(`status ${status}`, (d) => {
      const s = d?.tripUpdated?.status;
      if (s && statuses.at(-1) !== s) statuses.push(s);
      return s === status;
    });
    const t = item.tripUpdated;
    if (t.id !== trip.id) fail(`tripUpdated for another trip: ${JSON.stringify(t)}`);
    if (status !== "REQUESTED" && t.driver?.id !== driver.id) {
      fail(`tripUpdated ${status} without our driver: ${JSON.stringify(t)}`);
    }
    log(`rider saw ${status} through tripUpdated`);
    return t;
  }
  await expectStatus("REQUESTED");

  // Driver: follows the same trip with the legacy protocol (graphql-ws subprotocol).
  const legacyClient = new SubscriptionClient(
    WS_URL,
    { connectionParams: { authToken: driver.token }, reconnect: false },
    WebSocket,
  );
  cleanups.push(() => legacyClient.close());
  const legacy = new Stream("driver tripUpdated (subscriptions-transport-ws)");
  legacyClient
    .request({
      query: `subscription Followed($id: ID!) { tripUpdated(id: $id) { ${TRIP_FIELDS} } }`,
      variables: { id: trip.id },
    })
    .subscribe({
      next: (result) => (result.errors ? legacy.error(result.errors) : legacy.push(result.data)),
      error: (err) => legacy.error(err),
      complete: () => legacy.complete(),
    });
  async function legacySees(status) {
    await legacy.next(`status ${status}`, (d) => d?.tripUpdated?.status === status);
    log(`driver saw ${status} through tripUpdated (subscriptions-transport-ws)`);
  }
  await legacySees("REQUESTED"); // the current state first: the stream is live

  const accepted = await post(
    `mutation Accept($id: ID!) { acceptTrip(id: $id) { ${TRIP_FIELDS} } }`,
    { id: trip.id },
    driver.token,
  );
  if (accepted.acceptTrip.status !== "STARTED") fail(`acceptTrip: ${JSON.stringify(accepted)}`);
  log("driver accepted the trip over HTTP");
  await expectStatus("STARTED");
  await legacySees("STARTED");

  const UPDATE = `mutation Update($id: ID!, $status: TripStatus!) {
    updateTripStatus(id: $id, status: $status) { id status }
  }`;
  const moved = await post(UPDATE, { id: trip.id, status: "IN_PROGRESS" }, driver.token);
  if (moved.updateTripStatus.status !== "IN_PROGRESS") fail(`update: ${JSON.stringify(moved)}`);
  await expectStatus("IN_PROGRESS");
  await legacySees("IN_PROGRESS");

  // Positions: the first is reported before the rider subscribes, so it arrives as the
  // "last known position" and proves the stream is live; the others arrive as reported.
  const REPORT = `mutation Report($tripId: ID!, $location: LocationInput!) {
    reportLocation(tripId: $tripId, location: $location) { latitude longitude heading recordedAt }
  }`;
  const positions = [
    { latitude: 52.52, longitude: 13.405, heading: 90 },
    { latitude: 52.521, longitude: 13.407, heading: 45.5 },
    { latitude: 52.523, longitude: 13.41, heading: null },
  ];
  let locations;
  for (const [i, position] of positions.entries()) {
    const reported = await post(REPORT, { tripId: trip.id, location: position }, driver.token);
    const r = reported.reportLocation;
    if (r.latitude !== position.latitude || r.longitude !== position.longitude) {
      fail(`reportLocation returned ${JSON.stringify(r)} for ${JSON.stringify(position)}`);
    }
    locations ??= apolloStream(
      "rider driverLocation (Apollo Client)",
      gql`subscription Where($tripId: ID!) {
        driverLocation(tripId: $tripId) { latitude longitude heading recordedAt }
      }`,
      { tripId: trip.id },
    );
    const seen = await locations.next(`position ${i + 1} ${JSON.stringify(position)}`, (d) => {
      const l = d?.driverLocation;
      return (
        l?.latitude === position.latitude &&
        l?.longitude === position.longitude &&
        (l?.heading ?? null) === position.heading
      );
    });
    if (!seen.driverLocation.recordedAt) fail(`no recordedAt in ${JSON.stringify(seen)}`);
    log(`rider saw position ${i + 1} through driverLocation`);
  }

  const done = await post(UPDATE, { id: trip.id, status: "COMPLETED" }, driver.token);
  if (done.updateTripStatus.status !== "COMPLETED") fail(`update: ${JSON.stringify(done)}`);
  await expectStatus("COMPLETED");
  await legacySees("COMPLETED");

  const expected = ["REQUESTED", "STARTED", "IN_PROGRESS", "COMPLETED"];
  if (JSON.stringify(statuses) !== JSON.stringify(expected)) {
    fail(`tripUpdated statuses ${statuses.join(" -> ")}, expected ${expected.join(" -> ")}`);
  }
  log(`ride complete: ${statuses.join(" -> ")}`);
}

// --- A dispatched ride: everything the driver app does goes over its graphql-ws socket ---

// One operation (a mutation or query) over a graphql-ws client: its single result.
function wsCall(client, query, variables) {
  return new Promise((resolve, reject) => {
    let result;
    client.subscribe(
      { query, variables },
      {
        next: (r) => (result = r),
        error: (err) => reject(new RideError(describe(err))),
        complete: () =>
          result?.errors?.length || !result
            ? reject(new RideError(`${query.slice(0, 40)}: ${describe(result?.errors)}`))
            : resolve(result.data),
      },
    );
  });
}

async function dispatchedRide() {
  const rider = await account("RIDER");
  const driver = await account("DRIVER");
  const here = { latitude: 48.137, longitude: 11.575 };
  const driverWs = createClient({
    url: WS_URL,
    webSocketImpl: WebSocket,
    connectionParams: () => ({ authToken: driver.token }),
    retryAttempts: 0,
  });
  cleanups.push(() => driverWs.dispose());
  const ON = `mutation On($p: LocationInput!) { goOnline(position: $p) { availability } }`;
  const online = await within(wsCall(driverWs, ON, { p: { ...here, heading: 0 } }), "goOnline");
  if (online.goOnline.availability !== "AVAILABLE") fail(`goOnline: ${JSON.stringify(online)}`);
  log("dispatch: driver online over its socket (goOnline)");

  const offers = new Stream("driver offers (graphql-ws)");
  driverWs.subscribe(
    { query: `subscription { tripRequested { id status pickUp { latitude longitude } } }` },
    {
      next: (r) => (r.errors ? offers.error(r.errors) : offers.push(r.data)),
      error: (err) => offers.error(err),
      complete: () => offers.complete(),
    },
  );
  const REQUEST = `mutation Request($input: RequestTripInput!) {
    requestTrip(input: $input) { id status pickUp { latitude longitude } } }`;
  const CANCEL = `mutation Cancel($id: ID!) { cancelTrip(id: $id) { id } }`;
  const pickUp = { latitude: here.latitude + 0.001, longitude: here.longitude };
  let offer;
  for (let attempt = 1; attempt <= 5 && !offer; attempt++) {
    const input = { pickUpAddress: "Marienplatz", dropOffAddress: "Odeonsplatz", pickUp };
    const made = (await post(REQUEST, { input }, rider.token)).requestTrip;
    if (JSON.stringify(made.pickUp) !== JSON.stringify(pickUp)) fail(`pickUp: ${JSON.stringify(made)}`);
    try {
      const heard = await offers.next(
        `the offer of ${made.id}`,
        (d) => d?.tripRequested?.id === made.id,
        attempt === 5 ? STEP_MS : 1000,
      );
      offer = heard.tripRequested;
    } catch (err) {
      if (!(err instanceof RideError) || offers.failure || attempt === 5) throw err;
      await post(CANCEL, { id: made.id }, rider.token); // not subscribed yet: ask again
    }
  }
  log(`dispatch: the nearby driver was offered trip ${offer.id}`);

  const ACCEPT = `mutation Accept($id: ID!) { acceptTrip(id: $id) { id status } }`;
  const taken = await within(wsCall(driverWs, ACCEPT, { id: offer.id }), "acceptTrip");
  if (taken.acceptTrip.status !== "STARTED") fail(`acceptTrip: ${JSON.stringify(taken)}`);
  log("dispatch: driver accepted over its socket");

  const UPDATE = `mutation Up($p: LocationInput!) { updatePosition(position: $p) { availability } }`;
  let locations;
  for (const [i, step] of [0.0008, 0.0006, 0.0004].entries()) {
    const p = { latitude: here.latitude + step, longitude: here.longitude, heading: 90 };
    const state = await within(wsCall(driverWs, UPDATE, { p }), "updatePosition");
    if (state.updatePosition.availability !== "ON_TRIP") fail(`state: ${JSON.stringify(state)}`);
    locations ??= apolloLocations(rider, offer.id);
    await locations.next(
      `position ${i + 1}`,
      (d) => d?.driverLocation?.latitude === p.latitude,
    );
    log(`dispatch: rider saw position ${i + 1} (updatePosition) through driverLocation`);
  }
  const STEP = `mutation S($id: ID!, $s: TripStatus!) { updateTripStatus(id: $id, status: $s) { status } }`;
  for (const status of ["IN_PROGRESS", "COMPLETED"]) {
    const r = await within(wsCall(driverWs, STEP, { id: offer.id, s: status }), status);
    if (r.updateTripStatus.status !== status) fail(`updateTripStatus: ${JSON.stringify(r)}`);
  }
  const STATE = `query { driverState { availability } }`;
  const after = await within(wsCall(driverWs, STATE, {}), "driverState");
  if (after.driverState.availability !== "AVAILABLE") fail(`after: ${JSON.stringify(after)}`);
  log("dispatch: trip completed; the driver is AVAILABLE again");
}

// The rider's driverLocation through Apollo Client over its own graphql-ws socket.
function apolloLocations(rider, tripId) {
  const ws = createClient({
    url: WS_URL,
    webSocketImpl: WebSocket,
    connectionParams: () => ({ authToken: rider.token }),
    retryAttempts: 0,
  });
  cleanups.push(() => ws.dispose());
  const apollo = new ApolloClient({ link: new GraphQLWsLink(ws), cache: new InMemoryCache() });
  cleanups.push(() => apollo.stop());
  const stream = new Stream("rider driverLocation of the dispatched trip (Apollo Client)");
  const subscription = apollo
    .subscribe({
      query: gql`subscription Where($tripId: ID!) { driverLocation(tripId: $tripId) { latitude } }`,
      variables: { tripId },
    })
    .subscribe({
      next: (result) => (result.error ? stream.error(result.error) : stream.push(result.data)),
      error: (err) => stream.error(err),
      complete: () => stream.complete(),
    });
  cleanups.push(() => subscription.unsubscribe());
  return stream;
}

let code = 0;
try {
  await ride();
  await dispatchedRide();
} catch (err) {
  code = 1;
  const unexpected = err instanceof Error && !(err instanceof RideError) && !err.errors;
  const message = err instanceof RideError ? err.message : describe(err);
  if (unexpected) process.stderr.write(`${err.stack}\n`);
  process.stderr.write(`ride.mjs: FAILED: ${message}\n`);
} finally {
  finished = true;
  for (const cleanup of cleanups.reverse()) {
    try {
      await cleanup();
    } catch {
      // closing is best effort
    }
  }
  clearTimeout(overall);
}
process.exit(code);
