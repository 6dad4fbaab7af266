// Segment Dashboard: small enhancements; every page works without them.
(function () {
  "use strict";

  function slugify(text) {
    return text.toLowerCase().trim()
      .normalize("NFKD").replace(/[\u0300-\u036f]/g, "")
      .replace(/[^a-z0-9_.-]+/g, "-").replace(/^[^a-z0-9]+/, "").replace(/-+$/, "");
  }

  // Suggest a segment key from its name until the person edits the key themselves.
  document.querySelectorAll("form[data-key-from-name]").forEach(function (form) {
    var name = form.querySelector("[name=name]");
    var key = form.querySelector("[name=key]");
    if (!name || !key) return;
    var edited = key.value !== "" && key.value !== slugify(name.value);
    key.addEventListener("input", function () { edited = key.value !== ""; });
    name.addEventListener("input", function () { if (!edited) key.value = slugify(name.value); });
  });

  // A form sent once shows it: its button is disabled so a double click sends nothing more.
  document.addEventListener("submit", function (event) {
    event.target.querySelectorAll("button[data-once]").forEach(function (button) {
      setTimeout(function () { button.disabled = true; button.setAttribute("aria-busy", "true"); }, 0);
    });
  });

  // Copy buttons: data-copy names the element whose text is copied.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button || !navigator.clipboard) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  });
})();
