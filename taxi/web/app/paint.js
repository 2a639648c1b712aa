// The map's drawing on a 2D canvas context: the street grid with its names, the named
// places, real tiles (when TILE_URL is set), a route, pins, cars and the keyboard cursor.
// Each function gets the MapView for its projection (view.toPixel / view.toPoint).
import { STREET_LAT, STREET_LNG, avenueName, places, streetName } from "./streets.js";

const TILE = 256;

export function tiles(view) {
  const o = view.origin();
  const z = view.zoom;
  for (let tx = Math.floor(o.x / TILE); tx * TILE < o.x + view.canvas.width; tx++) {
    for (let ty = Math.floor(o.y / TILE); ty * TILE < o.y + view.canvas.height; ty++) {
      const src = view.tileUrl.replace("{z}", z).replace("{x}", tx).replace("{y}", ty);
      let img = view.tiles.get(src);
      if (!img) {
        img = new Image();
        img.onload = () => view.draw();
        img.src = src;
        view.tiles.set(src, img);
      }
      if (img.complete && img.naturalWidth) view.ctx.drawImage(img, tx * TILE - o.x, ty * TILE - o.y);
    }
  }
}

export function streets(view) {
  const { ctx } = view;
  const w = view.canvas.width;
  const h = view.canvas.height;
  const nw = view.toPoint(0, 0);
  const se = view.toPoint(w, h);
  const rows = [];
  const columns = [];
  for (let i = Math.floor(se.latitude / STREET_LAT); i <= Math.ceil(nw.latitude / STREET_LAT); i++) {
    rows.push([i, view.toPixel({ latitude: i * STREET_LAT, longitude: nw.longitude }).y]);
  }
  for (let j = Math.floor(nw.longitude / STREET_LNG); j <= Math.ceil(se.longitude / STREET_LNG); j++) {
    columns.push([j, view.toPixel({ latitude: nw.latitude, longitude: j * STREET_LNG }).x]);
  }
  ctx.fillStyle = "#ffffff";
  const road = view.zoom < view.maxZoom ? 5 : 8;
  for (const [, y] of rows) ctx.fillRect(0, y - road / 2, w, road);
  for (const [, x] of columns) ctx.fillRect(x - road / 2, 0, road, h);
  // Names go on the blocks beside the roads, after every road is drawn.
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#6b7280";
  // Street names in the first whole block from the left, right of its avenue's name.
  const first = columns.find(([, x]) => x > 14);
  const labelX = first ? first[1] + 8 : 6;
  // Zoomed out, names go on every 2nd or 4th road: they would overlap otherwise.
  const every = 2 ** Math.max(0, view.maxZoom - view.zoom);
  for (const [i, y] of rows) if (i % every === 0) ctx.fillText(streetName(i), labelX, y - 7);
  // Avenue names run down the top block (below the first street whose name sits above
  // it), clear of the street names, which sit at the bottom of each block.
  const top = rows.map(([, y]) => y).filter((y) => y > 4).sort((a, b) => a - b)[0] ?? 0;
  for (const [j, x] of columns) {
    if (j % every !== 0) continue;
    ctx.save();
    ctx.translate(x - 7, top + 10);
    ctx.rotate(Math.PI / 2);
    ctx.fillText(avenueName(j), 0, 0);
    ctx.restore();
  }
}

export function placeNames(view) {
  const { ctx } = view;
  ctx.font = "bold 11px system-ui, sans-serif";
  for (const place of places(view.home)) {
    const { x, y } = view.toPixel(place.point);
    ctx.fillStyle = "#7c3aed";
    ctx.fillRect(x - 3, y - 3, 6, 6);
    ctx.fillText(place.name, x + 6, y + 14);
  }
}

export function path(view, points) {
  const { ctx } = view;
  ctx.strokeStyle = "#2563eb";
  ctx.lineWidth = 4;
  ctx.setLineDash([8, 6]);
  ctx.beginPath();
  points.forEach((p, k) => {
    const { x, y } = view.toPixel(p);
    if (k) ctx.lineTo(x, y);
    else ctx.moveTo(x, y);
  });
  ctx.stroke();
  ctx.setLineDash([]);
}

export function pin(view, p, color, label) {
  const { ctx } = view;
  const { x, y } = view.toPixel(p);
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

export function car(view, p, color) {
  const { ctx } = view;
  const { x, y } = view.toPixel(p);
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

// A ring at the keyboard cursor, with the corner's name above it.
export function cursor(view, p, label) {
  const { ctx } = view;
  const { x, y } = view.toPixel(p);
  ctx.strokeStyle = "#111827";
  ctx.lineWidth = 3;
  ctx.beginPath();
  ctx.arc(x, y, 13, 0, 2 * Math.PI);
  ctx.stroke();
  ctx.font = "bold 12px system-ui, sans-serif";
  const width = ctx.measureText(label).width;
  ctx.fillStyle = "rgba(17, 24, 39, 0.85)";
  ctx.fillRect(x - width / 2 - 6, y - 40, width + 12, 20);
  ctx.fillStyle = "#fff";
  ctx.textAlign = "center";
  ctx.fillText(label, x, y - 26);
  ctx.textAlign = "start";
}
