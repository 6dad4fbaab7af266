// Segment Dashboard: small enhancements; every page works without them.
(function () {
  "use strict";

  // Styles that apply only when these enhancements run (e.g. the live search hides its submit button).
  document.documentElement.classList.add("js");

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

  // htmx swaps in no 4xx/5xx answer, so a search or form that met an error page would do nothing at all.
  // Show that page's content in place of the page's content, as a page load would; a poll (hx-trigger
  // "every ...") keeps its part as it is and tries again.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var detail = event.detail;
    if (detail.xhr.status < 400 || detail.xhr.getResponseHeader("HX-Refresh")) return;
    var trigger = detail.requestConfig && detail.requestConfig.elt && detail.requestConfig.elt.getAttribute("hx-trigger");
    if (trigger && trigger.indexOf("every ") === 0) return;
    var main = document.getElementById("main");
    if (!main || String(detail.serverResponse).indexOf('id="main"') === -1) return;
    detail.shouldSwap = true;
    detail.isError = false;
    detail.target = main;
    detail.selectOverride = "#main";
    detail.swapOverride = "outerHTML";
  });

  // htmx keeps a copy of the page's HTML for Back and Forward. What was typed or chosen lives in
  // properties that HTML leaves out, so without this the search box would come back empty above
  // results filtered by it: write the current values into the page before the copy is taken.
  document.addEventListener("htmx:beforeHistorySave", function () {
    // An empty style attribute left by a tool that styled an element for a moment (axe-core does)
    // would make the restored copy break the Content-Security-Policy, which allows no inline style.
    document.querySelectorAll("[style='']").forEach(function (element) { element.removeAttribute("style"); });
    document.querySelectorAll("input, textarea, select").forEach(function (field) {
      if (field.type === "file" || field.type === "password" || field.type === "hidden") return;
      if (field.type === "checkbox" || field.type === "radio") {
        field.toggleAttribute("checked", field.checked);
      } else if (field.tagName === "SELECT") {
        field.querySelectorAll("option").forEach(function (option) { option.toggleAttribute("selected", option.selected); });
      } else if (field.tagName === "TEXTAREA") {
        field.textContent = field.value;
      } else {
        field.setAttribute("value", field.value);
      }
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
    var approvals = form.querySelector(".approvals-choice");
    function toggle() {
      var chosen = form.querySelector("[name=mode]:checked");
      if (confirm) confirm.hidden = !(chosen && chosen.value === "replace");
      // Remove goes as context-target updates, which LaunchDarkly's import approvals do not cover.
      if (approvals) approvals.hidden = !!(chosen && chosen.value === "remove");
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
      // Read with the field's help (and any error from the server), not instead of it.
      var described = (typed.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
      described.push(message.id);
      typed.setAttribute("aria-describedby", described.join(" "));
    }
    message.textContent = "Type \u201c" + key + "\u201d to confirm that the segment will contain exactly the keys in this file.";
    typed.setAttribute("aria-invalid", "true");
    typed.focus();
  }, true);

  function scan() { document.querySelectorAll("form[data-upload-form]").forEach(setUp); }
  document.addEventListener("DOMContentLoaded", scan);
  document.addEventListener("htmx:load", scan);

  // The upload form came back from htmx with something to correct: focus goes to the first field
  // that says so, where its message is read with it, instead of staying on a button that is gone.
  document.addEventListener("htmx:load", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-upload-form]")) return;
    var invalid = form.querySelector("[aria-invalid=true]");
    if (invalid) invalid.focus();
  });
})();
