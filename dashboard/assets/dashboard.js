// Progressive enhancement only: every page works without this file.
// - The period's own dates show only when "From … to …" is chosen, and editing a date
//   chooses it.
// - A submitted filter form leaves empty fields (and the dates of a preset period) out of
//   the URL, so a view's address stays short enough to read and share.
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
    form.addEventListener("submit", () => {
      for (const field of form.querySelectorAll("input, select")) {
        const unused = field.value === "" || (dates.includes(field) && period.value !== "custom");
        if (unused) field.disabled = true;
      }
    });
  }
});
// Back to a page kept in the browser's cache: its fields usable again.
window.addEventListener("pageshow", () => {
  for (const field of document.querySelectorAll("form.filters [disabled]")) field.disabled = false;
});
