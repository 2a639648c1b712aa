// The driver page: go online at a point, receive offers, accept, drive (the car moves along
// the streets and reports its position), step the trip's status.
import { $, config, gql, show, signIn, status, subscribe, wireLogOut } from "./common.js";
import { MapView, address, distance, route, snap } from "./map.js";

const params = new URLSearchParams(location.search);
const TICK_MS = Number(params.get("tick")) || 400; // one position report per tick while driving
const STEP_METERS = 40; // how far the car moves per tick
const HEARTBEAT_MS = 20000; // stay fresh for dispatch (the server forgets a position after 60 s)

const TRIP = `id status pickUpAddress dropOffAddress
  pickUp { latitude longitude } dropOff { latitude longitude }
  rider { id username firstName }`;
const STATE = `availability position { latitude longitude heading }`;
const DRIVER_STATE = `query State { driverState { ${STATE} } }`;
const GO_ONLINE = `mutation Online($position: LocationInput!) { goOnline(position: $position) { ${STATE} } }`;
const GO_OFFLINE = `mutation Offline { goOffline { ${STATE} } }`;
const UPDATE = `mutation Move($position: LocationInput!) { updatePosition(position: $position) { ${STATE} } }`;
const POOL = `query Pool { trips(status: [REQUESTED, STARTED, IN_PROGRESS], first: 50) { edges { node { ${TRIP} driver { id } } } } }`;
const OFFERS = `subscription Offers { tripRequested { ${TRIP} } }`;
const CHANGES = `subscription Changes { tripsUpdated { ${TRIP} driver { id } } }`;
const ACCEPT = `mutation Accept($id: ID!) { acceptTrip(id: $id) { ${TRIP} } }`;
const STEP = `mutation Step($id: ID!, $status: TripStatus!) { updateTripStatus(id: $id, status: $status) { ${TRIP} } }`;

const NEXT = { STARTED: "IN_PROGRESS", IN_PROGRESS: "COMPLETED" };
const SAYS = {
  STARTED: "Drive to the pick-up",
  IN_PROGRESS: "Drive to the drop-off",
  COMPLETED: "Trip completed",
  CANCELED: "The rider canceled the trip",
};

const settings = await config();
const map = new MapView($("#map"), { center: settings.center, tileUrl: settings.tileUrl });
const offers = new Map();
let me = null;
let car = snap(settings.center);
let availability = "OFFLINE";
let trip = null;
let driving = false;

function placeCar(p) {
  car = p;
  map.set("car", car, "#fbbf24");
}

function setState(state) {
  availability = state.availability;
  $("#availability").textContent = availability;
  show($("#go-online"), availability === "OFFLINE");
  show($("#go-offline"), availability === "AVAILABLE");
  show($("#place-hint"), availability === "OFFLINE");
  if (state.position) placeCar(state.position);
}

function renderOffers() {
  const list = $("#offers");
  list.replaceChildren();
  if (!offers.size) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = availability === "OFFLINE" ? "Go online to receive offers." : "No offers yet.";
    list.append(li);
  }
  for (const t of offers.values()) {
    const li = document.createElement("li");
    li.dataset.trip = t.id;
    const away = t.pickUp ? ` · ${Math.round(distance(car, t.pickUp))} m away` : "";
    li.textContent = `${t.pickUpAddress} → ${t.dropOffAddress}${away} `;
    const accept = document.createElement("button");
    accept.textContent = "Accept";
    accept.className = "accept";
    accept.disabled = Boolean(trip);
    accept.addEventListener("click", () => acceptOffer(t.id));
    li.append(accept);
    list.append(li);
  }
}

function offer(t) {
  if (t.status === "REQUESTED") offers.set(t.id, t);
  else offers.delete(t.id);
  if (trip && t.id === trip.id) renderTrip(t);
  renderOffers();
}

function target() {
  return trip.status === "IN_PROGRESS" ? trip.dropOff : trip.pickUp;
}

function renderTrip(t) {
  trip = t;
  show($("#trip"), true);
  $("#trip-status").textContent = SAYS[t.status];
  $("#trip-status").dataset.status = t.status;
  $("#trip-rider").textContent = t.rider ? `Rider: ${t.rider.firstName} (${t.rider.username})` : "";
  $("#trip-where").textContent = `${t.pickUpAddress} → ${t.dropOffAddress}`;
  map.set("pickUp", t.pickUp, "#059669", "P");
  map.set("dropOff", t.dropOff, "#dc2626", "D");
  const live = t.status === "STARTED" || t.status === "IN_PROGRESS";
  show($("#drive"), live && Boolean(target()));
  $("#drive").textContent = t.status === "IN_PROGRESS" ? "Drive to the drop-off" : "Drive to the pick-up";
  show($("#step"), live);
  $("#step").textContent = t.status === "STARTED" ? "Pick up: start the trip" : "Drop off: complete the trip";
  map.path = live && target() ? route(car, target()) : null;
  map.draw();
  if (!live) {
    trip = null;
    map.path = null;
    gql(DRIVER_STATE).then((d) => setState(d.driverState));
  }
  renderOffers();
}

async function report(position) {
  setState((await gql(UPDATE, { position })).updatePosition);
}

// Moves the car along the streets to the trip's next stop, one position report per tick.
async function drive() {
  const goal = target();
  $("#drive").disabled = true;
  driving = true;
  try {
    await follow(goal);
  } finally {
    driving = false;
    $("#drive").disabled = false;
  }
  if (!trip) return;
  show($("#drive"), false);
  status(trip.status === "STARTED" ? "At the pick-up." : "At the drop-off.");
}

async function follow(goal) {
  const legs = route(car, goal);
  for (let k = 1; k < legs.length; k++) {
    const from = { ...car };
    const to = legs[k];
    const steps = Math.max(1, Math.ceil(distance(from, to) / STEP_METERS));
    const heading = to.longitude !== from.longitude ? (to.longitude > from.longitude ? 90 : 270) : to.latitude >= from.latitude ? 0 : 180;
    for (let s = 1; s <= steps; s++) {
      if (!trip) return;
      const p = {
        latitude: +(from.latitude + ((to.latitude - from.latitude) * s) / steps).toFixed(6),
        longitude: +(from.longitude + ((to.longitude - from.longitude) * s) / steps).toFixed(6),
        heading,
      };
      placeCar(p);
      map.path = route(car, goal);
      await report(p);
      await new Promise((r) => setTimeout(r, TICK_MS));
    }
  }
}

async function acceptOffer(id) {
  try {
    renderTrip((await gql(ACCEPT, { id })).acceptTrip);
    setState((await gql(DRIVER_STATE)).driverState);
    offers.delete(id);
    renderOffers();
    status("");
  } catch (err) {
    offers.delete(id);
    renderOffers();
    status(err.code === "CONFLICT" ? "Another driver took that trip." : err.message, true);
  }
}

map.onClick = (point) => {
  if (availability === "OFFLINE") placeCar(snap(point));
};

$("#go-online").addEventListener("click", async () => {
  try {
    setState((await gql(GO_ONLINE, { position: car })).goOnline);
    status(`Online at ${address(car)}.`);
    renderOffers();
  } catch (err) {
    status(err.message, true);
  }
});

$("#go-offline").addEventListener("click", async () => {
  setState((await gql(GO_OFFLINE)).goOffline);
  renderOffers();
});

$("#drive").addEventListener("click", () => drive().catch((err) => status(err.message, true)));

$("#step").addEventListener("click", async () => {
  try {
    renderTrip((await gql(STEP, { id: trip.id, status: NEXT[trip.status] })).updateTripStatus);
    status("");
  } catch (err) {
    status(err.message, true);
  }
});

setInterval(() => {
  if (availability !== "OFFLINE" && !driving) report(car).catch(() => {});
}, HEARTBEAT_MS);

map.draw();
placeCar(car);
wireLogOut();
// Failures at start (a server without the dispatch API, a lost session) show on the page.
(async () => {
  me = await signIn("DRIVER");
  $("#who").textContent = me.username;
  show($("#log-out"), true);
  show($("#online"), true);
  setState((await gql(DRIVER_STATE)).driverState);
  for (const { node } of (await gql(POOL)).trips.edges) {
    if (node.status === "REQUESTED") offers.set(node.id, node);
    else if (node.driver && node.driver.id === me.id) renderTrip(node);
  }
  renderOffers();
  subscribe(OFFERS, {}, (data) => offer(data.tripRequested));
  subscribe(CHANGES, {}, (data) => offer(data.tripsUpdated));
})().catch((err) => status(err.message, true));
