// An address field: type a street corner or a place (suggested as you type, from the app's
// own street names), or pick on the map; either way the field and the point agree.
import { address, lookUp, suggestions } from "./streets.js";
import { status } from "./ui.js";

let listed = false;

// One <datalist id="addresses"> for every field of the page.
function datalist(center) {
  if (listed) return;
  listed = true;
  const list = document.createElement("datalist");
  list.id = "addresses";
  for (const name of suggestions(center)) {
    const option = document.createElement("option");
    option.value = name;
    list.append(option);
  }
  document.body.append(list);
}

export class AddressField {
  // onPick(point | null) runs when what was typed names a corner (or was cleared).
  constructor(input, { center, onPick }) {
    datalist(center);
    this.input = input;
    this.center = center;
    input.setAttribute("list", "addresses");
    input.autocomplete = "off";
    input.addEventListener("change", () => {
      const text = input.value.trim();
      if (!text) return onPick(null);
      const point = lookUp(text, center);
      if (point) {
        input.value = address(point, center);
        input.removeAttribute("aria-invalid");
        onPick(point);
      } else {
        input.setAttribute("aria-invalid", "true");
        status(`No street corner or place called "${text}". Try "City Hall" or "${suggestions(center)[10]}".`, true);
      }
    });
  }

  show(point) {
    this.input.value = point ? address(point, this.center) : "";
    this.input.removeAttribute("aria-invalid");
  }
}
