// How amounts read on screen: money from integer minor units (never a float sum), arrival
// times in whole minutes, distances in m or km, durations, dates for the earnings view.

const MINOR_DIGITS = { JPY: 0, KRW: 0 }; // ISO 4217 currencies without minor units; else 2

export function money(m) {
  if (!m) return "";
  const digits = MINOR_DIGITS[m.currency] ?? 2;
  const value = m.amount / 10 ** digits;
  return new Intl.NumberFormat("en", { style: "currency", currency: m.currency }).format(value);
}

export function eta(seconds) {
  if (seconds == null) return "";
  const minutes = Math.round(seconds / 60);
  return minutes < 1 ? "less than a minute" : `${minutes} min`;
}

export function meters(m) {
  if (m == null) return "";
  return m < 1000 ? `${Math.round(m)} m` : `${(m / 1000).toFixed(1)} km`;
}

export function duration(seconds) {
  if (seconds == null) return "";
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  return m ? `${m} min ${s} s` : `${s} s`;
}

// Local midnight today, and of this week's Monday, as Dates.
export function startOfToday(now = new Date()) {
  return new Date(now.getFullYear(), now.getMonth(), now.getDate());
}

export function startOfWeek(now = new Date()) {
  const today = startOfToday(now);
  const back = (today.getDay() + 6) % 7; // Monday = 0
  return new Date(today.getFullYear(), today.getMonth(), today.getDate() - back);
}
