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

// Upload form: a progress bar while the browser sends the file, the header box pre-set from the
// file's first row, and the replace confirmation shown only for "replace".
(function () {
  "use strict";
  var HEADER_WORDS = ["key", "keys", "id", "ids", "user", "users", "userkey", "user_key", "user-key", "userid",
    "user_id", "user-id", "email", "e-mail", "emails", "context", "contextkey", "context_key", "context-key",
    "device", "device_id", "deviceid", "account", "account_id", "accountid", "customer", "customer_id",
    "member", "member_id", "uuid", "guid"];

  function setUp(form) {
    if (form.dataset.ready) return;
    form.dataset.ready = "1";
    var progress = form.querySelector("#upload-progress");
    form.addEventListener("htmx:xhr:progress", function (event) {
      if (!progress || !event.detail.lengthComputable) return;
      progress.hidden = false;
      progress.value = Math.round(event.detail.loaded / event.detail.total * 100);
    });
    var file = form.querySelector("input[type=file]");
    var header = form.querySelector("[name=has_header]");
    if (file && header && window.FileReader) {
      file.addEventListener("change", function () {
        if (!file.files.length) return;
        var reader = new FileReader();
        reader.onload = function () {
          var first = String(reader.result).replace(/^\uFEFF/, "").split(/\r\n|\r|\n/)[0] || "";
          var cell = first.split(",")[0].trim().replace(/^"|"$/g, "").trim().toLowerCase();
          header.checked = HEADER_WORDS.indexOf(cell) !== -1;
        };
        reader.readAsText(file.files[0].slice(0, 4096));
      });
    }
    var confirm = form.querySelector(".replace-confirm");
    function toggle() {
      var chosen = form.querySelector("[name=mode]:checked");
      if (confirm) confirm.hidden = !(chosen && chosen.value === "replace");
    }
    form.querySelectorAll("[name=mode]").forEach(function (radio) { radio.addEventListener("change", toggle); });
    toggle();
  }

  // Replace without the typed key is refused by the server too; saying so before the upload starts
  // spares sending a large file only to choose it again.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-upload-form]")) return;
    if (event.submitter && event.submitter.value === "check") return;
    var chosen = form.querySelector("[name=mode]:checked");
    var typed = form.querySelector("[name=confirm_key]");
    if (!chosen || chosen.value !== "replace" || !typed) return;
    var key = typed.getAttribute("data-segment-key");
    if (typed.value.trim() === key) return;
    event.preventDefault();
    event.stopPropagation();
    var message = form.querySelector(".replace-confirm .client-error");
    if (!message) {
      message = document.createElement("small");
      message.className = "field-error client-error";
      message.id = typed.id + "_client_error";
      message.setAttribute("role", "alert");
      typed.insertAdjacentElement("afterend", message);
      typed.setAttribute("aria-describedby", message.id);
    }
    message.textContent = "Type \u201c" + key + "\u201d to confirm that the segment will contain exactly the keys in this file.";
    typed.setAttribute("aria-invalid", "true");
    typed.focus();
  }, true);

  function scan() { document.querySelectorAll("form[data-upload-form]").forEach(setUp); }
  document.addEventListener("DOMContentLoaded", scan);
  document.addEventListener("htmx:load", scan);
})();
