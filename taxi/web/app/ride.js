// The rider's view of a requested trip: its status in words, the driver, the live arrival
// time, "your driver is here", why it ended when it did not go to plan, and the receipt.
import { duration, eta, meters, money } from "./format.js";
import { distance } from "./streets.js";
import { $, say, show, status } from "./ui.js";

export const TRIP = `id status pickUpAddress dropOffAddress rating cancelReason arrivedAt
  pickUpEtaSeconds dropOffEtaSeconds
  pickUp { latitude longitude } dropOff { latitude longitude }
  driver { id username firstName photoUrl }
  driverLocation { latitude longitude heading etaSeconds }
  fare { quoted { amount currency } final { amount currency } distanceMeters durationSeconds surge }`;

const SAYS = {
  REQUESTED: "Looking for a driver…",
  STARTED: "Your driver is on the way",
  IN_PROGRESS: "On the way to the drop-off",
  COMPLETED: "You have arrived.",
  CANCELED: "The ride was canceled",
};
const ENDED = {
  RIDER_CANCELED: "You canceled the ride.",
  NO_DRIVER_FOUND: "No driver found: nobody could take your ride. Try again in a few minutes.",
  RIDER_NO_SHOW: "Your driver waited at the pick-up and left: the ride was canceled as a no-show.",
  ACCOUNT_DEACTIVATED: "The ride was canceled: an account on it was deactivated.",
};

export function statusLine(t) {
  if (t.status === "CANCELED" && t.cancelReason) return ENDED[t.cancelReason];
  if (t.status === "STARTED" && t.arrivedAt) return "Your driver is here";
  if (t.status === "COMPLETED" && t.rating != null) return `You rated this ride ${t.rating}★. Thank you!`;
  return SAYS[t.status];
}

export function driverLine(t) {
  const line = $("#trip-driver");
  const img = $("#driver-photo");
  line.querySelector("span").textContent = t.driver ? `Driver: ${t.driver.firstName} (${t.driver.username})` : "";
  if (t.driver && t.driver.photoUrl) {
    img.src = t.driver.photoUrl;
    img.alt = `Photo of ${t.driver.firstName}`;
  }
  show(img, Boolean(t.driver && t.driver.photoUrl));
}

// The arrival time: `seconds` from the trip or from the latest driverLocation frame.
export function showEta(t, seconds) {
  const el = $("#eta");
  const coming = t.status === "STARTED" && !t.arrivedAt;
  const riding = t.status === "IN_PROGRESS";
  if ((!coming && !riding) || seconds == null) {
    el.textContent = "";
    delete el.dataset.seconds;
    return;
  }
  el.dataset.seconds = String(seconds);
  say(el, coming ? `Your driver arrives in ${eta(seconds)}.` : `${eta(seconds)} to the drop-off.`);
}

export function showDistance(t, location) {
  const target = t.status === "IN_PROGRESS" ? t.dropOff : t.pickUp;
  const live = t.status === "STARTED" || t.status === "IN_PROGRESS";
  $("#trip-distance").textContent = live && location && target
    ? `The car is ${Math.round(distance(location, target))} m from ${t.status === "IN_PROGRESS" ? "the drop-off" : "you"}.`
    : "";
}

export function receipt(t) {
  const fare = t.fare;
  const paid = fare && fare.final;
  show($("#receipt"), Boolean(paid));
  if (!paid) return;
  // A no-show's fee is a price without a ride: no distance, no time.
  const ridden = t.status === "COMPLETED";
  $("#receipt-label").textContent = ridden ? "Price" : "No-show fee";
  $("#receipt-price").textContent = money(fare.final);
  $("#receipt").dataset.amount = String(fare.final.amount);
  for (const el of document.querySelectorAll("#receipt .ridden")) show(el, ridden);
  $("#receipt-distance").textContent = meters(fare.distanceMeters);
  $("#receipt-time").textContent = duration(fare.durationSeconds);
}

// Says, once, what changed between two states of the trip that the status line alone
// would not explain (a driver who gave the trip back, who accepted it), and clears that
// at the next change.
export function announce(before, after) {
  if (!before || before.id !== after.id) return;
  if (before.status === "STARTED" && after.status === "REQUESTED") {
    status("Your driver had to give the trip back. It is offered to other drivers now.");
  } else if (before.status === "REQUESTED" && after.status === "STARTED" && after.driver) {
    status(`${after.driver.firstName} accepted your ride.`);
  } else if (before.status !== after.status || (!before.arrivedAt && after.arrivedAt)) {
    status(""); // the status line says the rest
  }
}
