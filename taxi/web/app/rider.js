// The rider page: cars nearby and the price before requesting; pick-up and drop-off typed,
// clicked or picked with the keyboard; request with the quote; watch, rate, plan again.
import { config, gql, subscribe } from "./api.js";
import { AddressField } from "./addresses.js";
import { showUser, signIn } from "./auth.js";
import { MapView } from "./map.js";
import { Quote, showCars } from "./quote.js";
import { TRIP, announce, driverLine, receipt, showDistance, showEta, statusLine } from "./ride.js";
import { route, snap } from "./streets.js";
import { $, onClick, say, show, status } from "./ui.js";

const CARS_EVERY_MS = 3000;
const ACTIVE = `query Active { trips(status: [REQUESTED, STARTED, IN_PROGRESS], first: 1) { edges { node { ${TRIP} } } } }`;
const REQUEST = `mutation Request($input: RequestTripInput!) { requestTrip(input: $input) { ${TRIP} } }`;
const CANCEL = `mutation Cancel($id: ID!) { cancelTrip(id: $id) { ${TRIP} } }`;
const RATE = `mutation Rate($id: ID!, $rating: Int!) { rateTrip(id: $id, rating: $rating) { ${TRIP} } }`;
const WATCH = `subscription Watch($id: ID!) { tripUpdated(id: $id) { ${TRIP} } }`;
const FOLLOW = `subscription Follow($tripId: ID!) { driverLocation(tripId: $tripId) { latitude longitude heading etaSeconds } }`;
const PIN = { pickUp: ["#059669", "P", "pick-up"], dropOff: ["#dc2626", "D", "drop-off"] };

const settings = await config();
const map = new MapView($("#map"), { center: settings.center, tileUrl: settings.tileUrl });
map.coveredBy($("aside"));
const quote = new Quote();
const plan = { pickUp: null, dropOff: null };
const fields = {
  pickUp: new AddressField($("#pick-up"), { center: settings.center, onPick: (p) => setPin("pickUp", p) }),
  dropOff: new AddressField($("#drop-off"), { center: settings.center, onPick: (p) => setPin("dropOff", p) }),
};
let next = "pickUp"; // what the map sets next
let trip = null;
let stops = [];
let carTimer = null;

const fail = (err) => status(err.message, true);

function stopWatching() {
  for (const stop of stops) stop();
  stops = [];
}

function pointAt(kind) {
  next = kind;
  $("#pin-next").textContent = PIN[kind][2];
}

// After a pin is set the map sets the one still missing, or else the other one.
function setPin(kind, point, { quiet = false } = {}) {
  plan[kind] = point;
  const [color, label] = PIN[kind];
  map.set(kind, point, color, label);
  map.fit([plan.pickUp, plan.dropOff]);
  fields[kind].show(point);
  pointAt(!plan.pickUp ? "pickUp" : !plan.dropOff ? "dropOff" : kind === "pickUp" ? "dropOff" : "pickUp");
  $("#request").disabled = !(plan.pickUp && plan.dropOff);
  quote.clear();
  if (quiet) return;
  if (plan.pickUp && plan.dropOff) quote.ask(plan.pickUp, plan.dropOff).catch(fail);
  else showCars(map, plan.pickUp || settings.center).catch(fail);
}

function planning() {
  trip = null;
  status("");
  stopWatching();
  show($("#plan"), true);
  show($("#ride"), false);
  map.path = null;
  map.set("car", null);
  setPin("dropOff", null, { quiet: true });
  setPin("pickUp", null);
  clearInterval(carTimer);
  carTimer = setInterval(() => {
    // The quote says how many cars are near; until there is one, the list stays fresh.
    if (!quote.current) showCars(map, plan.pickUp || settings.center).catch(fail);
    else if (quote.expiring()) quote.ask(plan.pickUp, plan.dropOff).catch(fail);
  }, CARS_EVERY_MS);
}

function render(t) {
  announce(trip, t);
  trip = t;
  $("#ride").dataset.trip = t.id;
  show($("#plan"), false);
  show($("#ride"), true);
  say($("#trip-status"), statusLine(t));
  $("#trip-status").dataset.status = t.status;
  $("#trip-status").dataset.reason = t.cancelReason || "";
  $("#trip-status").dataset.arrived = t.arrivedAt ? "yes" : "no";
  driverLine(t);
  showEta(t, t.status === "IN_PROGRESS" ? t.dropOffEtaSeconds : t.pickUpEtaSeconds);
  receipt(t);
  show($("#cancel"), t.status === "REQUESTED" || t.status === "STARTED");
  show($("#rate"), t.status === "COMPLETED" && t.rating == null);
  show($("#again"), t.status === "CANCELED" || (t.status === "COMPLETED" && t.rating != null));
  if (t.pickUp) map.set("pickUp", t.pickUp, ...PIN.pickUp.slice(0, 2));
  if (t.dropOff) map.set("dropOff", t.dropOff, ...PIN.dropOff.slice(0, 2));
  if (!t.driver) map.set("car", null);
  moveCar(t.driverLocation);
}

function moveCar(location) {
  const target = trip.status === "IN_PROGRESS" ? trip.dropOff : trip.status === "STARTED" ? trip.pickUp : null;
  map.path = location && target ? route(location, target) : null;
  if (location) map.set("car", location, "#fbbf24");
  else map.draw();
  map.fit([location, target]);
  showDistance(trip, location);
  if (location && location.etaSeconds != null) showEta(trip, location.etaSeconds);
}

function follow(t) {
  clearInterval(carTimer);
  map.cars = [];
  render(t);
  // A frame already on its way when the rider moved on ("Plan another ride": `trip` is
  // null then) must not bring the finished ride back over the new plan.
  const current = () => trip !== null && trip.id === t.id;
  stops.push(
    subscribe(WATCH, { id: t.id }, (data) => current() && render(data.tripUpdated)),
    subscribe(FOLLOW, { tripId: t.id }, (data) => current() && moveCar(data.driverLocation)),
  );
}

// The map sets the field last visited.
$("#pick-up").addEventListener("focus", () => pointAt("pickUp"));
$("#drop-off").addEventListener("focus", () => pointAt("dropOff"));

map.onClick = (point) => {
  if (!trip) setPin(next, snap(point));
};

onClick($("#request"), "Requesting…", async () => {
  const shown = quote.current;
  const q = await quote.fresh(plan.pickUp, plan.dropOff);
  // A quote that expired meanwhile may come back at another price: the rider sees it first.
  if (shown && q && q.price.amount !== shown.price.amount) {
    status("The price has changed (see above): request again to accept it.", true);
    return;
  }
  const input = {
    pickUpAddress: $("#pick-up").value,
    dropOffAddress: $("#drop-off").value,
    pickUp: plan.pickUp,
    dropOff: plan.dropOff,
    quoteId: q ? q.id : null,
  };
  const data = await gql(REQUEST, { input });
  status("");
  follow(data.requestTrip);
}, (err) => (err.code === "CONFLICT" ? "You already have a ride under way." : err.message));

onClick($("#cancel"), "Canceling…", async () => render((await gql(CANCEL, { id: trip.id })).cancelTrip));

for (const button of document.querySelectorAll("[data-rating]")) {
  onClick(button, "…", async () => {
    render((await gql(RATE, { id: trip.id, rating: Number(button.dataset.rating) })).rateTrip);
  });
}

$("#again").addEventListener("click", () => {
  planning();
  $("#pick-up").focus();
});

map.draw();
// Failures at start (a server without the dispatch API, a lost session) show on the page.
(async () => {
  showUser(await signIn("RIDER"));
  const active = (await gql(ACTIVE)).trips.edges;
  if (active.length) follow(active[0].node);
  else planning();
})().catch(fail);
