// What a rider learns before requesting: the cars near the pick-up (or the map's centre)
// with the nearest one's arrival time, or plainly that there are none right now; and, once
// both ends are set, the price (estimateFare) whose quote id the request then carries.
import { gql } from "./api.js";
import { eta, meters, money, duration } from "./format.js";
import { $, say, show } from "./ui.js";

const NEARBY = `query Nearby($near: PointInput!) {
  nearbyCars(near: $near, radiusMeters: 5000, first: 20) {
    distanceMeters etaSeconds location { latitude longitude heading } } }`;
const ESTIMATE = `query Estimate($pickUp: PointInput!, $dropOff: PointInput!) {
  estimateFare(pickUp: $pickUp, dropOff: $dropOff) {
    id distanceMeters durationSeconds surge price { amount currency } carsNearby pickUpEtaSeconds expiresAt } }`;
const REQUOTE_MARGIN_MS = 10000; // a quote this close to expiring is asked for again

const point = (p) => ({ latitude: p.latitude, longitude: p.longitude });

function sayCars(count, nearestEta) {
  say($("#cars"), count
    ? `${count} car${count > 1 ? "s" : ""} nearby, the nearest about ${eta(nearestEta)} away.`
    : "No cars nearby right now: a request may find no driver.");
  $("#cars").dataset.cars = String(count);
}

// The cars near `near`, drawn on `map`; says how many and how far.
export async function showCars(map, near) {
  const cars = (await gql(NEARBY, { near: point(near) })).nearbyCars;
  map.cars = cars.map((c) => c.location);
  map.draw();
  sayCars(cars.length, cars.length ? cars[0].etaSeconds : null);
}

export class Quote {
  constructor() {
    this.current = null;
    this.asking = 0; // only the latest question's answer is shown
  }

  clear() {
    this.current = null;
    this.asking += 1;
    show($("#quote"), false);
  }

  // Prices the ride from pickUp to dropOff and shows it; resolves with the quote.
  async ask(pickUp, dropOff) {
    const asked = ++this.asking;
    const q = (await gql(ESTIMATE, { pickUp: point(pickUp), dropOff: point(dropOff) })).estimateFare;
    if (asked !== this.asking) return null;
    this.current = q;
    $("#quote-price").textContent = money(q.price);
    $("#quote").dataset.amount = String(q.price.amount);
    $("#quote-surge").textContent = q.surge > 1 ? `×${q.surge.toFixed(1)} busy time` : "";
    $("#quote-ride").textContent = `${meters(q.distanceMeters)}, about ${duration(q.durationSeconds)} of driving.`;
    sayCars(q.carsNearby, q.pickUpEtaSeconds);
    show($("#quote"), true);
    return q;
  }

  expiring() {
    return !this.current || Date.parse(this.current.expiresAt) - Date.now() < REQUOTE_MARGIN_MS;
  }

  // The quote to request with, asked again when it is about to expire.
  async fresh(pickUp, dropOff) {
    return this.expiring() ? this.ask(pickUp, dropOff) : this.current;
  }
}
