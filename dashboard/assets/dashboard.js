// Progressive enhancement only: every page works without this file.
// The period's own dates show only when "From … to …" is chosen, and editing a date
// chooses it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form.filters")) {
    const period = form.querySelector("#period");
    const dates = [form.querySelector("#from"), form.querySelector("#to")];
    if (!period || dates.some((input) => !input)) continue;
    const update = () => form.classList.toggle("no-range", period.value !== "custom");
    period.addEventListener("change", update);
    for (const input of dates) {
      input.addEventListener("change", () => { period.value = "custom"; update(); });
    }
    update();
  }
});
