// A map drawn by the app on a <canvas>: Web Mercator at a fixed zoom, a grid of named streets
// (works with no internet), or real tiles underneath when the server sets TILE_URL.
const TILE = 256;
const STREET_LAT = 0.002; // a street every ~220 m north-south
const STREET_LNG = 0.003; // and every ~200 m east-west (at mid latitudes)
const AVENUES = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

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

function ordinal(n) {
  const s = ["th", "st", "nd", "rd"];
  const v = Math.abs(n) % 100;
  return n + (s[(v - 20) % 10] || s[v] || s[0]);
}

export function streetIndex(p) {
  return { i: Math.round(p.latitude / STREET_LAT), j: Math.round(p.longitude / STREET_LNG) };
}

export function snap(p) {
  const { i, j } = streetIndex(p);
  return { latitude: +(i * STREET_LAT).toFixed(6), longitude: +(j * STREET_LNG).toFixed(6) };
}

function streetName(i) {
  return `${ordinal(((i % 200) + 200) % 200)} Street`;
}

function avenueName(j) {
  return `${AVENUES[((j % 26) + 26) % 26]} Avenue`;
}

// The nearest corner's name, as an address.
export function address(p) {
  const { i, j } = streetIndex(p);
  return `${streetName(i)} & ${avenueName(j)}`;
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

export class MapView {
  constructor(canvas, { center, tileUrl = null, zoom = 15 }) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.center = center;
    this.zoom = zoom;
    this.tileUrl = tileUrl;
    this.tiles = new Map();
    this.markers = {}; // name -> {point, color, label}
    this.cars = []; // other cars: [{latitude, longitude, heading}]
    this.path = null;
    this.onClick = null;
    canvas.addEventListener("click", (e) => {
      const rect = canvas.getBoundingClientRect();
      const p = this.toPoint(e.clientX - rect.left, e.clientY - rect.top);
      if (this.onClick) this.onClick(p);
    });
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  origin() {
    const c = world(this.center.latitude, this.center.longitude, this.zoom);
    return { x: c.x - this.canvas.width / 2, y: c.y - this.canvas.height / 2 };
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
    if (this.tileUrl) this.drawTiles();
    else this.drawStreets();
    if (this.path) this.drawPath(this.path);
    for (const car of this.cars) this.drawCar(car, "#6b7280");
    // Pins first, then cars: a car waiting at its pick-up stays visible.
    const markers = Object.entries(this.markers);
    for (const [name, m] of markers) if (!name.startsWith("car")) this.drawPin(m.point, m.color, m.label);
    for (const [name, m] of markers) if (name.startsWith("car")) this.drawCar(m.point, m.color);
  }

  drawTiles() {
    const o = this.origin();
    const z = this.zoom;
    for (let tx = Math.floor(o.x / TILE); tx * TILE < o.x + this.canvas.width; tx++) {
      for (let ty = Math.floor(o.y / TILE); ty * TILE < o.y + this.canvas.height; ty++) {
        const src = this.tileUrl.replace("{z}", z).replace("{x}", tx).replace("{y}", ty);
        let img = this.tiles.get(src);
        if (!img) {
          img = new Image();
          img.onload = () => this.draw();
          img.src = src;
          this.tiles.set(src, img);
        }
        if (img.complete && img.naturalWidth) this.ctx.drawImage(img, tx * TILE - o.x, ty * TILE - o.y);
      }
    }
  }

  drawStreets() {
    const { ctx } = this;
    const w = this.canvas.width;
    const h = this.canvas.height;
    const nw = this.toPoint(0, 0);
    const se = this.toPoint(w, h);
    const streets = [];
    const avenues = [];
    for (let i = Math.floor(se.latitude / STREET_LAT); i <= Math.ceil(nw.latitude / STREET_LAT); i++) {
      streets.push([i, this.toPixel({ latitude: i * STREET_LAT, longitude: nw.longitude }).y]);
    }
    for (let j = Math.floor(nw.longitude / STREET_LNG); j <= Math.ceil(se.longitude / STREET_LNG); j++) {
      avenues.push([j, this.toPixel({ latitude: nw.latitude, longitude: j * STREET_LNG }).x]);
    }
    ctx.fillStyle = "#ffffff";
    for (const [, y] of streets) ctx.fillRect(0, y - 4, w, 8);
    for (const [, x] of avenues) ctx.fillRect(x - 4, 0, 8, h);
    // Names go on the blocks beside the roads, after every road is drawn.
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#6b7280";
    const labelX = avenues.length > 1 ? avenues[0][1] + 8 : 6;
    for (const [i, y] of streets) ctx.fillText(streetName(i), Math.max(6, labelX), y - 7);
    for (const [j, x] of avenues) {
      ctx.save();
      ctx.translate(x - 7, h - 6);
      ctx.rotate(-Math.PI / 2);
      ctx.fillText(avenueName(j), 0, 0);
      ctx.restore();
    }
  }

  drawPath(points) {
    const { ctx } = this;
    ctx.strokeStyle = "#2563eb";
    ctx.lineWidth = 4;
    ctx.setLineDash([8, 6]);
    ctx.beginPath();
    points.forEach((p, k) => {
      const { x, y } = this.toPixel(p);
      if (k) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
    });
    ctx.stroke();
    ctx.setLineDash([]);
  }

  drawPin(p, color, label) {
    const { ctx } = this;
    const { x, y } = this.toPixel(p);
    ctx.fillStyle = color;
    ctx.beginPath();
    ctx.arc(x, y - 14, 11, 0, 2 * Math.PI);
    ctx.moveTo(x - 7, y - 7);
    ctx.lineTo(x, y);
    ctx.lineTo(x + 7, y - 7);
    ctx.fill();
    ctx.fillStyle = "#fff";
    ctx.font = "bold 12px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.fillText(label, x, y - 10);
    ctx.textAlign = "start";
  }

  drawCar(p, color) {
    const { ctx } = this;
    const { x, y } = this.toPixel(p);
    ctx.save();
    ctx.translate(x, y);
    ctx.rotate((((p.heading || 0) - 90) * Math.PI) / 180);
    ctx.fillStyle = color;
    ctx.strokeStyle = "#111827";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.roundRect(-11, -6, 22, 12, 3);
    ctx.fill();
    ctx.stroke();
    ctx.fillStyle = "#bfdbfe";
    ctx.fillRect(3, -4, 5, 8);
    ctx.restore();
  }
}
