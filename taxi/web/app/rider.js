// The rider page: nearby cars, pick-up and drop-off on the map, request, watch, rate.
import { $, config, gql, show, signIn, status, subscribe, wireLogOut } from "./common.js";
import { MapView, address, distance, snap } from "./map.js";

const CARS_EVERY_MS = 3000;
const TRIP = `id status pickUpAddress dropOffAddress rating
  pickUp { latitude longitude } dropOff { latitude longitude }
  driver { id username firstName }
  driverLocation { latitude longitude heading }`;
const NEARBY = `query Nearby($near: PointInput!) {
  nearbyCars(near: $near, radiusMeters: 5000, first: 20) { distanceMeters location { latitude longitude heading } } }`;
const ACTIVE = `query Active { trips(status: [REQUESTED, STARTED, IN_PROGRESS], first: 1) { edges { node { ${TRIP} } } } }`;
const REQUEST = `mutation Request($input: RequestTripInput!) { requestTrip(input: $input) { ${TRIP} } }`;
const CANCEL = `mutation Cancel($id: ID!) { cancelTrip(id: $id) { ${TRIP} } }`;
const RATE = `mutation Rate($id: ID!, $rating: Int!) { rateTrip(id: $id, rating: $rating) { ${TRIP} } }`;
const WATCH = `subscription Watch($id: ID!) { tripUpdated(id: $id) { ${TRIP} } }`;
const FOLLOW = `subscription Follow($tripId: ID!) { driverLocation(tripId: $tripId) { latitude longitude heading } }`;

const HERE_METERS = 30; // closer than this, the car is "here"
const SAYS = {
  REQUESTED: "Looking for a driver…",
  STARTED: "Your driver is on the way",
  IN_PROGRESS: "On the way to the drop-off",
  COMPLETED: "You have arrived. How was it?",
  CANCELED: "The ride was canceled",
};

const settings = await config();
const map = new MapView($("#map"), { center: settings.center, tileUrl: settings.tileUrl });
const plan = { pickUp: null, dropOff: null };
let trip = null;
let stops = [];
let carTimer = null;

function stopWatching() {
  for (const stop of stops) stop();
  stops = [];
}

function setPin(kind, point) {
  plan[kind] = point;
  map.set(kind, point, kind === "pickUp" ? "#059669" : "#dc2626", kind === "pickUp" ? "P" : "D");
  $(kind === "pickUp" ? "#pick-up" : "#drop-off").value = point ? address(point) : "";
  $("#request").disabled = !(plan.pickUp && plan.dropOff);
}

async function showCars() {
  const near = plan.pickUp || settings.center;
  const data = await gql(NEARBY, { near: { latitude: near.latitude, longitude: near.longitude } });
  map.cars = data.nearbyCars.map((c) => c.location);
  map.draw();
  const n = data.nearbyCars.length;
  $("#cars").textContent = n
    ? `${n} car${n > 1 ? "s" : ""} nearby, the nearest ${Math.round(data.nearbyCars[0].distanceMeters)} m away.`
    : "No cars nearby right now.";
}

function planning() {
  trip = null;
  stopWatching();
  show($("#plan"), true);
  show($("#ride"), false);
  map.path = null;
  map.set("car", null);
  setPin("pickUp", null);
  setPin("dropOff", null);
  showCars().catch((e) => status(e.message, true));
  carTimer = setInterval(() => showCars().catch((e) => status(e.message, true)), CARS_EVERY_MS);
}

function render(t) {
  trip = t;
  $("#ride").dataset.trip = t.id;
  show($("#plan"), false);
  show($("#ride"), true);
  $("#trip-status").textContent = SAYS[t.status];
  $("#trip-status").dataset.status = t.status;
  $("#trip-driver").textContent = t.driver ? `Driver: ${t.driver.firstName} (${t.driver.username})` : "";
  show($("#cancel"), t.status === "REQUESTED" || t.status === "STARTED");
  show($("#rate"), t.status === "COMPLETED" && t.rating == null);
  show($("#again"), t.status === "CANCELED" || (t.status === "COMPLETED" && t.rating != null));
  if (t.rating != null) $("#trip-status").textContent = `You rated this ride ${t.rating}★. Thank you!`;
  if (t.pickUp) map.set("pickUp", t.pickUp, "#059669", "P");
  if (t.dropOff) map.set("dropOff", t.dropOff, "#dc2626", "D");
  if (t.driverLocation) moveCar(t.driverLocation);
  else $("#trip-distance").textContent = "";
}

function moveCar(location) {
  map.set("car", location, "#fbbf24");
  const target = trip && trip.status === "IN_PROGRESS" ? trip.dropOff : trip && trip.pickUp;
  const live = trip && (trip.status === "STARTED" || trip.status === "IN_PROGRESS");
  if (target && live) {
    const meters = Math.round(distance(location, target));
    const what = trip.status === "IN_PROGRESS" ? "the drop-off" : "you";
    $("#trip-distance").textContent = `The car is ${meters} m from ${what}.`;
    if (trip.status === "STARTED" && meters < HERE_METERS) $("#trip-status").textContent = "Your driver is here";
  } else if (trip) {
    $("#trip-distance").textContent = "";
  }
}

function follow(t) {
  clearInterval(carTimer);
  map.cars = [];
  render(t);
  stops.push(
    subscribe(WATCH, { id: t.id }, (data) => render(data.tripUpdated)),
    subscribe(FOLLOW, { tripId: t.id }, (data) => moveCar(data.driverLocation)),
  );
}

map.onClick = (point) => {
  if (trip) return;
  const kind = document.querySelector("input[name=pin]:checked").value;
  setPin(kind, snap(point));
  if (kind === "pickUp") document.querySelector("input[name=pin][value=dropOff]").checked = true;
};

$("#request").addEventListener("click", async () => {
  try {
    const data = await gql(REQUEST, {
      input: {
        pickUpAddress: $("#pick-up").value,
        dropOffAddress: $("#drop-off").value,
        pickUp: plan.pickUp,
        dropOff: plan.dropOff,
      },
    });
    status("");
    follow(data.requestTrip);
  } catch (err) {
    status(err.code === "CONFLICT" ? "You already have a ride under way." : err.message, true);
  }
});

$("#cancel").addEventListener("click", async () => {
  try {
    render((await gql(CANCEL, { id: trip.id })).cancelTrip);
  } catch (err) {
    status(err.message, true);
  }
});

for (const button of document.querySelectorAll("[data-rating]")) {
  button.addEventListener("click", async () => {
    try {
      render((await gql(RATE, { id: trip.id, rating: Number(button.dataset.rating) })).rateTrip);
    } catch (err) {
      status(err.message, true);
    }
  });
}

$("#again").addEventListener("click", planning);

map.draw();
wireLogOut();
// Failures at start (a server without the dispatch API, a lost session) show on the page.
(async () => {
  const user = await signIn("RIDER");
  $("#who").textContent = user.username;
  show($("#log-out"), true);
  const active = (await gql(ACTIVE)).trips.edges;
  if (active.length) follow(active[0].node);
  else planning();
})().catch((err) => status(err.message, true));
