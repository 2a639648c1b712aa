// The app's own city: a grid of named streets (east-west, "12th Street") and avenues
// (north-south, "C Avenue") over the whole globe, a few named places near the map's
// centre, and the look-up that turns a typed address into a point.
export const STREET_LAT = 0.002; // a street every ~220 m north-south
export const STREET_LNG = 0.003; // and every ~200 m east-west (at mid latitudes)
const STREETS = 200; // names repeat every 200 streets and 26 avenues
const AVENUES = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
// Places, in blocks from the corner nearest the map's centre: the same everywhere.
const PLACES = [
  ["Central Station", 0, 0],
  ["City Hall", 2, -3],
  ["Market Square", -2, -2],
  ["Museum", -3, 4],
  ["Park Gate", 4, 2],
  ["University", -5, -5],
  ["Stadium", 6, -6],
];

function ordinal(n) {
  const s = ["th", "st", "nd", "rd"];
  const v = Math.abs(n) % 100;
  return n + (s[(v - 20) % 10] || s[v] || s[0]);
}

const mod = (n, m) => ((n % m) + m) % m;

export function streetIndex(p) {
  return { i: Math.round(p.latitude / STREET_LAT), j: Math.round(p.longitude / STREET_LNG) };
}

export function corner(i, j) {
  return { latitude: +(i * STREET_LAT).toFixed(6), longitude: +(j * STREET_LNG).toFixed(6) };
}

export function snap(p) {
  const { i, j } = streetIndex(p);
  return corner(i, j);
}

export const streetName = (i) => `${ordinal(mod(i, STREETS))} Street`;
export const avenueName = (j) => `${AVENUES[mod(j, AVENUES.length)]} Avenue`;

// The nearest corner's name, as an address (a named place when one is there).
export function address(p, center = null) {
  const { i, j } = streetIndex(p);
  const place = center && places(center).find((q) => q.i === i && q.j === j);
  return place ? place.name : `${streetName(i)} & ${avenueName(j)}`;
}

export function places(center) {
  const { i, j } = streetIndex(center);
  return PLACES.map(([name, di, dj]) => ({ name, i: i + di, j: j + dj, point: corner(i + di, j + dj) }));
}

// The index with `name` (mod `period`) nearest `from`: names repeat, the closest one wins.
function nearest(from, name, period) {
  return from + mod(name - from + Math.floor(period / 2), period) - Math.floor(period / 2);
}

// A typed address ("12th Street & C Avenue", "c ave and 12th", "City Hall") to the corner
// it names nearest `center`; null when it names none.
export function lookUp(text, center) {
  const words = text.toLowerCase().replace(/[&,]/g, " ").trim();
  if (!words) return null;
  const place = places(center).find((q) => q.name.toLowerCase() === words)
    ?? places(center).find((q) => words.length >= 3 && q.name.toLowerCase().startsWith(words));
  if (place) return place.point;
  const number = words.match(/\b(\d{1,3})(?:st|nd|rd|th)?\b/);
  const rest = words
    .replace(/\b\d{1,3}(?:st|nd|rd|th)?\b/, " ")
    .replace(/\b(streets?|st|avenues?|ave?|and|at|corner|of|the)\b/g, " ");
  const letter = rest.match(/\b([a-z])\b/);
  if (!number || !letter || Number(number[1]) >= STREETS) return null;
  const c = streetIndex(center);
  return corner(nearest(c.i, Number(number[1]), STREETS), nearest(c.j, AVENUES.indexOf(letter[1].toUpperCase()), AVENUES.length));
}

// What a typed address can be: the places, then the corners around the centre.
export function suggestions(center, blocks = 3) {
  const c = streetIndex(center);
  const names = places(center).map((q) => q.name);
  for (let di = -blocks; di <= blocks; di++) {
    for (let dj = -blocks; dj <= blocks; dj++) names.push(`${streetName(c.i + di)} & ${avenueName(c.j + dj)}`);
  }
  return names;
}

// Metres between two points (haversine).
export function distance(a, b) {
  const r = 6371000;
  const rad = Math.PI / 180;
  const dLat = (b.latitude - a.latitude) * rad;
  const dLng = (b.longitude - a.longitude) * rad;
  const h =
    Math.sin(dLat / 2) ** 2 +
    Math.cos(a.latitude * rad) * Math.cos(b.latitude * rad) * Math.sin(dLng / 2) ** 2;
  return 2 * r * Math.asin(Math.sqrt(h));
}

// A route along the streets: east-west first, then north-south.
export function route(from, to) {
  return [from, { latitude: from.latitude, longitude: to.longitude }, to];
}
