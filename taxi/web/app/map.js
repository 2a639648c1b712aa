// The map on a <canvas>: Web Mercator at a fixed zoom around a centre, markers and cars on
// it (drawn by paint.js). A click picks a point; so does the keyboard: the focused map moves
// a cursor one block per arrow key and Enter (or Space) picks the corner under it. On a
// phone the panel is a sheet over the map's lower part: the part it covers is left out
// when centring (coveredBy).
import * as paint from "./paint.js";
import { address, corner, snap, streetIndex } from "./streets.js";

const TILE = 256;
const MIN_ZOOM = 13;
const MARGIN = 34; // pixels kept clear around a point that must be seen (a pin is ~25 high)
const STEPS = { ArrowUp: [1, 0], ArrowDown: [-1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };

function world(lat, lng, zoom) {
  const scale = TILE * 2 ** zoom;
  const s = Math.sin((lat * Math.PI) / 180);
  return {
    x: ((lng + 180) / 360) * scale,
    y: (0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)) * scale,
  };
}

function unworld(x, y, zoom) {
  const scale = TILE * 2 ** zoom;
  const n = Math.PI - (2 * Math.PI * y) / scale;
  return {
    latitude: (180 / Math.PI) * Math.atan(Math.sinh(n)),
    longitude: (x / scale) * 360 - 180,
  };
}

export class MapView {
  constructor(canvas, { center, tileUrl = null, zoom = 15 }) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.center = center; // where the view is centred: moves to show points (fit)
    this.home = center; // the city's centre (MAP_CENTER): its places are placed from it
    this.zoom = zoom;
    this.maxZoom = zoom; // fit zooms out (to MIN_ZOOM) and back in, never further in
    this.tileUrl = tileUrl;
    this.tiles = new Map();
    this.markers = {}; // name -> {point, color, label}
    this.cars = []; // other cars: [{latitude, longitude, heading}]
    this.path = null;
    this.onClick = null;
    this.cursor = null; // the keyboard's corner while the map has focus
    this.cover = null; // an element over the map's lower part (the phone's sheet)
    canvas.tabIndex = 0;
    canvas.addEventListener("click", (e) => {
      const rect = canvas.getBoundingClientRect();
      const p = this.toPoint(e.clientX - rect.left, e.clientY - rect.top);
      if (this.onClick) this.onClick(p);
    });
    canvas.addEventListener("keydown", (e) => this.key(e));
    // The cursor shows for keyboard focus only (a click focuses the map too).
    canvas.addEventListener("focus", () => canvas.matches(":focus-visible") && this.moveCursor(0, 0));
    canvas.addEventListener("blur", () => {
      this.cursor = null;
      this.draw();
    });
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  // Shows every one of `points` (a typed address far away, a car leaving the view): when
  // one is out of view, or the view is zoomed out further than they need, it centres on
  // their middle at the closest zoom (down to MIN_ZOOM) at which they all fit.
  fit(points) {
    const all = points.filter(Boolean);
    if (!all.length) return;
    const visible = this.canvas.height - this.covered();
    const out = all.some((p) => {
      const { x, y } = this.toPixel(p);
      return x < MARGIN || y < MARGIN || x > this.canvas.width - MARGIN || y > visible - MARGIN;
    });
    let zoom = this.maxZoom;
    while (zoom > MIN_ZOOM && !this.fits(all, zoom, visible)) zoom -= 1;
    if (!out && zoom <= this.zoom) return;
    const lats = all.map((p) => p.latitude);
    const lngs = all.map((p) => p.longitude);
    this.zoom = zoom;
    this.center = {
      latitude: (Math.min(...lats) + Math.max(...lats)) / 2,
      longitude: (Math.min(...lngs) + Math.max(...lngs)) / 2,
    };
    this.draw();
  }

  fits(points, zoom, visible) {
    const xs = points.map((p) => world(p.latitude, p.longitude, zoom).x);
    const ys = points.map((p) => world(p.latitude, p.longitude, zoom).y);
    const w = Math.max(...xs) - Math.min(...xs);
    const h = Math.max(...ys) - Math.min(...ys);
    return w <= this.canvas.width - 2 * MARGIN && h <= visible - 2 * MARGIN;
  }

  coveredBy(el) {
    this.cover = el;
    new ResizeObserver(() => this.draw()).observe(el);
  }

  // Pixels of the canvas's bottom hidden under the cover.
  covered() {
    if (!this.cover || this.cover.hidden) return 0;
    const map = this.canvas.getBoundingClientRect();
    const cover = this.cover.getBoundingClientRect();
    const overlapsWidth = cover.left <= map.left + 1 && cover.right >= map.right - 1;
    return overlapsWidth ? Math.max(0, Math.min(map.bottom, cover.bottom) - Math.max(map.top, cover.top)) : 0;
  }

  key(e) {
    const step = STEPS[e.key];
    if (step && !this.cursor) {
      e.preventDefault();
      this.moveCursor(0, 0);
    } else if (step) {
      e.preventDefault();
      this.moveCursor(...step);
    } else if ((e.key === "Enter" || e.key === " ") && this.cursor && this.onClick) {
      e.preventDefault();
      this.onClick(this.cursor);
    }
  }

  moveCursor(di, dj) {
    const { i, j } = streetIndex(this.cursor || snap(this.center));
    this.cursor = corner(i + di, j + dj);
    this.canvas.setAttribute("aria-label", `Map, cursor at ${address(this.cursor, this.home)}: arrow keys move it, Enter picks it`);
    this.draw();
  }

  origin() {
    const c = world(this.center.latitude, this.center.longitude, this.zoom);
    const visible = this.canvas.height - this.covered();
    return { x: c.x - this.canvas.width / 2, y: c.y - visible / 2 };
  }

  toPixel(p) {
    const w = world(p.latitude, p.longitude, this.zoom);
    const o = this.origin();
    return { x: w.x - o.x, y: w.y - o.y };
  }

  toPoint(x, y) {
    const o = this.origin();
    const p = unworld(o.x + x, o.y + y, this.zoom);
    return { latitude: +p.latitude.toFixed(6), longitude: +p.longitude.toFixed(6) };
  }

  set(name, point, color, label) {
    if (point) this.markers[name] = { point, color, label };
    else delete this.markers[name];
    this.draw();
  }

  draw() {
    const { canvas, ctx } = this;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    ctx.fillStyle = "#eef0e6";
    ctx.fillRect(0, 0, w, h);
    if (this.tileUrl) paint.tiles(this);
    else paint.streets(this);
    paint.placeNames(this);
    if (this.path) paint.path(this, this.path);
    for (const other of this.cars) paint.car(this, other, "#6b7280");
    // Pins first, then cars: a car waiting at its pick-up stays visible.
    const markers = Object.entries(this.markers);
    for (const [name, m] of markers) if (!name.startsWith("car")) paint.pin(this, m.point, m.color, m.label);
    for (const [name, m] of markers) if (name.startsWith("car")) paint.car(this, m.point, m.color);
    if (this.cursor) paint.cursor(this, this.cursor, address(this.cursor, this.home));
  }
}
