// The driver page: go online where the car is, see offers (price, length, pick-up on the
// map), accept, drive (the car moves along the streets and reports its position), step the
// trip, give it back or report a rider who never came; earnings today and this week.
import { AddressField } from "./addresses.js";
import { config, gql, subscribe } from "./api.js";
import { showUser, signIn } from "./auth.js";
import { driveTo } from "./drive.js";
import { showEarnings } from "./earnings.js";
import { showTrip } from "./job.js";
import { MapView } from "./map.js";
import { Offers } from "./offers.js";
import { address, route, snap } from "./streets.js";
import { $, busy, onClick, show, status } from "./ui.js";

const params = new URLSearchParams(location.search);
const TICK_MS = Number(params.get("tick")) || 400; // one position report per tick while driving
const HEARTBEAT_MS = 20000; // stay fresh for dispatch (the server forgets a position after 60 s)

const TRIP = `id status pickUpAddress dropOffAddress arrivedAt cancelReason
  pickUp { latitude longitude } dropOff { latitude longitude }
  rider { id username firstName photoUrl }
  fare { quoted { amount currency } final { amount currency } }`;
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
const RELEASE = `mutation Release($id: ID!, $noShow: Boolean) { releaseTrip(id: $id, noShow: $noShow) { ${TRIP} } }`;

const NEXT = { STARTED: "IN_PROGRESS", IN_PROGRESS: "COMPLETED" };

const settings = await config();
const map = new MapView($("#map"), { center: settings.center, tileUrl: settings.tileUrl });
map.coveredBy($("aside"));
let me = null;
let car = snap(settings.center);
let availability = "OFFLINE";
let trip = null;
let driving = false;
const offers = new Offers(map, { accept: acceptOffer, car: () => car });
const where = new AddressField($("#car-at"), {
  center: settings.center,
  onPick: (p) => {
    if (p) placeCar(p);
    map.fit([p]);
  },
});

function placeCar(p) {
  car = p;
  map.set("car", car, "#fbbf24");
  if (availability === "OFFLINE") where.show(car);
}

function setState(state) {
  availability = state.availability;
  $("#availability").textContent = availability;
  show($("#go-online"), availability === "OFFLINE");
  show($("#go-offline"), availability === "AVAILABLE");
  show($("#place"), availability === "OFFLINE");
  if (state.position) placeCar(state.position);
}

function renderOffers() {
  offers.closed = Boolean(trip);
  offers.render(availability === "OFFLINE");
  if (!trip) map.fit([car, ...[...offers.trips.values()].map((t) => t.pickUp)]);
}

function offer(t) {
  const fresh = t.status === "REQUESTED" && !offers.trips.has(t.id) && !offers.given.has(t.id);
  offers.update(t);
  if (fresh && !trip) status(`New offer: ${t.pickUpAddress} → ${t.dropOffAddress}.`);
  if (trip && t.id === trip.id) renderTrip(t);
  renderOffers();
}

function target() {
  return trip.status === "IN_PROGRESS" ? trip.dropOff : trip.pickUp;
}

function renderTrip(t) {
  trip = t;
  showTrip(t, { noShowSeconds: settings.noShowSeconds, driving, current: () => trip });
  map.set("pickUp", t.pickUp, "#059669", "P");
  map.set("dropOff", t.dropOff, "#dc2626", "D");
  const live = t.status === "STARTED" || t.status === "IN_PROGRESS";
  map.path = live && target() ? route(car, target()) : null;
  if (live) map.fit([car, target()]);
  map.draw();
  if (!live) {
    trip = null;
    map.path = null;
    gql(DRIVER_STATE).then((d) => setState(d.driverState)).catch(fail);
    if (t.status === "COMPLETED" || t.cancelReason === "RIDER_NO_SHOW") showEarnings().catch(fail);
  }
  renderOffers();
}

const fail = (err) => status(err.message, true);

async function report(position) {
  setState((await gql(UPDATE, { position })).updatePosition);
}

async function drive() {
  driving = true;
  const goal = target();
  const arrived = await driveTo(goal, {
    car: () => car,
    place: placeCar,
    report,
    going: () => Boolean(trip),
    tickMs: TICK_MS,
    onPath: (path) => (map.path = path),
  }).finally(() => (driving = false));
  if (!arrived || !trip) return;
  show($("#drive"), false);
  status(trip.status === "STARTED" ? "At the pick-up." : "At the drop-off.");
}

async function acceptOffer(id, button) {
  await busy(button, "Accepting…", async () => {
    try {
      renderTrip((await gql(ACCEPT, { id })).acceptTrip);
      setState((await gql(DRIVER_STATE)).driverState);
      status("");
    } finally {
      offers.remove(id);
      renderOffers();
    }
  }, (err) => (err.code === "CONFLICT" ? "Another driver took that trip." : err.message));
}

map.onClick = (point) => {
  if (availability === "OFFLINE") placeCar(snap(point));
};

onClick($("#go-online"), "Going online…", async () => {
  setState((await gql(GO_ONLINE, { position: car })).goOnline);
  status(`Online at ${address(car, settings.center)}.`);
  renderOffers();
});

onClick($("#go-offline"), "Going offline…", async () => {
  setState((await gql(GO_OFFLINE)).goOffline);
  renderOffers();
});

onClick($("#drive"), "Driving…", drive);

onClick($("#step"), "Saving…", async () => {
  renderTrip((await gql(STEP, { id: trip.id, status: NEXT[trip.status] })).updateTripStatus);
  status("");
});

onClick($("#release"), "Giving it back…", async () => {
  const id = trip.id;
  offers.given.add(id);
  renderTrip((await gql(RELEASE, { id, noShow: false })).releaseTrip);
  status("You gave the trip back: it is offered to other drivers.");
});

onClick($("#no-show"), "Reporting…", async () => {
  renderTrip((await gql(RELEASE, { id: trip.id, noShow: true })).releaseTrip);
  status("No-show reported: the trip is canceled and the no-show fee charged.");
});

onClick($("#earnings-refresh"), "Refreshing…", showEarnings);

setInterval(() => {
  if (availability !== "OFFLINE" && !driving) report(car).catch(() => {});
}, HEARTBEAT_MS);

map.draw();
placeCar(car);
// Failures at start (a server without the dispatch API, a lost session) show on the page.
(async () => {
  me = await signIn("DRIVER");
  showUser(me);
  show($("#online"), true);
  show($("#earnings"), true);
  setState((await gql(DRIVER_STATE)).driverState);
  for (const { node } of (await gql(POOL)).trips.edges) {
    if (node.status === "REQUESTED") offers.update(node);
    else if (node.driver && node.driver.id === me.id) renderTrip(node);
  }
  renderOffers();
  subscribe(OFFERS, {}, (data) => offer(data.tripRequested));
  subscribe(CHANGES, {}, (data) => offer(data.tripsUpdated));
  await showEarnings();
})().catch(fail);
