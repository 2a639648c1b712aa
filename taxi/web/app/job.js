// The driver's trip panel: what to do next, the rider (and photo), where, the price, and
// which buttons apply: drive, step, give the trip back while driving to the pick-up, and
// report a no-show only once NO_SHOW_SECONDS have passed since arriving.
import { money } from "./format.js";
import { $, say, show } from "./ui.js";

const SAYS = {
  STARTED: "Drive to the pick-up",
  IN_PROGRESS: "Drive to the drop-off",
  COMPLETED: "Trip completed",
  CANCELED: "The rider canceled the trip",
  REQUESTED: "You gave the trip back",
};
const ENDED = {
  RIDER_NO_SHOW: "The rider did not come: canceled as a no-show",
  ACCOUNT_DEACTIVATED: "Canceled: an account on the trip was deactivated",
  NO_DRIVER_FOUND: "Canceled: no driver found",
};

let noShowTimer = null;

// The no-show button: enabled `noShowSeconds` after the driver arrived, not before; the
// countdown re-reads the trip (current()) each second, so a trip that ended stops it.
function noShowAfter(t, noShowSeconds, current) {
  clearTimeout(noShowTimer);
  const waiting = t && t.status === "STARTED" && t.arrivedAt;
  show($("#no-show"), Boolean(waiting));
  show($("#no-show-hint"), Boolean(waiting));
  if (!waiting) return;
  const left = Date.parse(t.arrivedAt) + noShowSeconds * 1000 - Date.now();
  $("#no-show").disabled = left > 0;
  $("#no-show-hint").textContent = left > 0
    ? `If the rider has not come, you can report a no-show in ${Math.ceil(left / 1000)} s.`
    : "The rider has not come: you may report a no-show (the no-show fee is charged).";
  if (left > 0) noShowTimer = setTimeout(() => noShowAfter(current(), noShowSeconds, current), Math.min(left, 1000));
}

export function showTrip(t, { noShowSeconds, driving, current }) {
  show($("#trip"), true);
  const waitingHere = t.status === "STARTED" && t.arrivedAt;
  say($("#trip-status"), (t.status === "CANCELED" && ENDED[t.cancelReason])
    || (waitingHere ? "At the pick-up: waiting for the rider" : SAYS[t.status]));
  $("#trip-status").dataset.status = t.status;
  $("#trip-rider").querySelector("span").textContent = t.rider ? `Rider: ${t.rider.firstName} (${t.rider.username})` : "";
  $("#rider-photo").src = (t.rider && t.rider.photoUrl) || "";
  show($("#rider-photo"), Boolean(t.rider && t.rider.photoUrl));
  $("#trip-where").textContent = `${t.pickUpAddress} → ${t.dropOffAddress}`;
  const fare = t.fare && (t.fare.final || t.fare.quoted);
  const what = t.cancelReason === "RIDER_NO_SHOW" ? "No-show fee" : t.fare && t.fare.final ? "Fare" : "Quoted";
  $("#trip-fare").textContent = fare ? `${what}: ${money(fare)}` : "";
  const live = t.status === "STARTED" || t.status === "IN_PROGRESS";
  const waiting = t.status === "STARTED" && t.arrivedAt && !driving;
  show($("#drive"), live && Boolean(t.pickUp) && !waiting);
  $("#drive").textContent = t.status === "IN_PROGRESS" ? "Drive to the drop-off" : "Drive to the pick-up";
  show($("#step"), live);
  $("#step").textContent = t.status === "STARTED" ? "Pick up: start the trip" : "Drop off: complete the trip";
  show($("#release"), t.status === "STARTED");
  noShowAfter(t, noShowSeconds, current);
}
