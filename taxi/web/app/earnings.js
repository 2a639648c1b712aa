// The driver's earnings: what completed trips earned today and this week (local time),
// read with `earnings(from, to)` when the page opens and after each completed trip.
import { gql } from "./api.js";
import { meters, money, startOfToday, startOfWeek } from "./format.js";
import { $ } from "./ui.js";

const EARNINGS = `query Earnings($today: DateTime!, $week: DateTime!, $to: DateTime!) {
  today: earnings(from: $today, to: $to) { trips total { amount currency } distanceMeters }
  week: earnings(from: $week, to: $to) { trips total { amount currency } distanceMeters } }`;

function row(id, e) {
  const cells = document.querySelectorAll(`#${id} td`);
  cells[0].textContent = String(e.trips);
  cells[1].textContent = money(e.total);
  cells[2].textContent = meters(e.distanceMeters);
  document.getElementById(id).dataset.amount = String(e.total.amount);
  document.getElementById(id).dataset.trips = String(e.trips);
}

export async function showEarnings() {
  const now = new Date();
  // `to` a minute ahead: a trip completed just now is inside the range.
  const to = new Date(now.getTime() + 60000).toISOString();
  const data = await gql(EARNINGS, { today: startOfToday(now).toISOString(), week: startOfWeek(now).toISOString(), to });
  row("earned-today", data.today);
  row("earned-week", data.week);
  $("#earnings").dataset.loaded = "yes";
}
