// The driver's car on the move: along the streets to a goal, one position report per tick
// (the server sums the driven distance and the rider's ETA from these), so the app drives
// like a phone in a car would report.
import { distance, route } from "./streets.js";

const STEP_METERS = 40; // how far the car moves per tick

function heading(from, to) {
  if (to.longitude !== from.longitude) return to.longitude > from.longitude ? 90 : 270;
  return to.latitude >= from.latitude ? 0 : 180;
}

// Moves from `car()` to `goal`: place(p) shows each step, report(p) sends it; stops early
// when going() turns false (the trip ended or was given back).
export async function driveTo(goal, { car, place, report, going, tickMs, onPath }) {
  const legs = route(car(), goal);
  for (let k = 1; k < legs.length; k++) {
    const from = { ...car() };
    const to = legs[k];
    const steps = Math.max(1, Math.ceil(distance(from, to) / STEP_METERS));
    for (let s = 1; s <= steps; s++) {
      if (!going()) return false;
      const p = {
        latitude: +(from.latitude + ((to.latitude - from.latitude) * s) / steps).toFixed(6),
        longitude: +(from.longitude + ((to.longitude - from.longitude) * s) / steps).toFixed(6),
        heading: heading(from, to),
      };
      place(p);
      onPath(route(p, goal));
      await report(p);
      await new Promise((r) => setTimeout(r, tickMs));
    }
  }
  return going();
}
