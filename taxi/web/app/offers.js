// The driver's offers: trips requested nearby, each listed with its price, its length and
// how far its pick-up is, and its pick-up drawn on the map (numbered like the list).
import { meters, money } from "./format.js";
import { distance, route } from "./streets.js";
import { $ } from "./ui.js";

const OFFER_COLOR = "#ea580c";

// Metres along the streets (as the car drives), not as the crow flies.
function along(from, to) {
  const legs = route(from, to);
  return legs.slice(1).reduce((sum, p, k) => sum + distance(legs[k], p), 0);
}

export class Offers {
  // accept(id) takes an offer; car() is where the driver's car is now.
  constructor(map, { accept, car }) {
    this.map = map;
    this.accept = accept;
    this.car = car;
    this.trips = new Map();
    this.given = new Set(); // trips this driver gave back: never an offer again
    this.closed = false; // no accepting while on a trip
  }

  // A trip's latest state: an offer while REQUESTED, gone otherwise.
  update(t) {
    if (t.status === "REQUESTED" && !this.given.has(t.id)) this.trips.set(t.id, t);
    else this.trips.delete(t.id);
  }

  remove(id) {
    this.trips.delete(id);
  }

  render(offline) {
    const list = $("#offers");
    list.replaceChildren();
    for (const name of Object.keys(this.map.markers)) if (name.startsWith("offer-")) delete this.map.markers[name];
    if (!this.trips.size) {
      const li = document.createElement("li");
      li.className = "empty";
      li.textContent = offline ? "Go online to receive offers." : "No offers yet.";
      list.append(li);
    }
    let n = 0;
    for (const t of this.trips.values()) {
      n += 1;
      list.append(this.item(t, n));
      if (t.pickUp) this.map.markers[`offer-${t.id}`] = { point: t.pickUp, color: OFFER_COLOR, label: String(n) };
    }
    this.map.draw();
  }

  item(t, n) {
    const li = document.createElement("li");
    li.dataset.trip = t.id;
    const price = t.fare && t.fare.quoted ? money(t.fare.quoted) : "metered";
    const length = t.pickUp && t.dropOff ? `${meters(along(t.pickUp, t.dropOff))} ride` : "";
    const away = t.pickUp ? `pick-up ${meters(along(this.car(), t.pickUp))} away` : "";
    const what = document.createElement("div");
    what.innerHTML = `<strong class="offer-n"></strong> <span class="where"></span><br><span class="price"></span> <span class="hint"></span>`;
    what.querySelector(".offer-n").textContent = `${n}.`;
    what.querySelector(".where").textContent = `${t.pickUpAddress} → ${t.dropOffAddress}`;
    what.querySelector(".price").textContent = price;
    what.querySelector(".hint").textContent = [length, away].filter(Boolean).join(" · ");
    const accept = document.createElement("button");
    accept.textContent = "Accept";
    accept.className = "accept";
    accept.disabled = this.closed;
    accept.setAttribute("aria-label", `Accept offer ${n}: ${t.pickUpAddress} to ${t.dropOffAddress}, ${price}`);
    accept.addEventListener("click", () => this.accept(t.id, accept));
    li.append(what, accept);
    return li;
  }
}
