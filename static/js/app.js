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
  // A search or filter form (method GET) is what its page's address says: the copy is taken when the
  // answer to the next search arrives, by when the box already holds the next words, so its fields
  // are written from the address the copy is saved under, not from what they hold now.
  function fromAddress(field, params) {
    if (field.type === "checkbox" || field.type === "radio") {
      field.toggleAttribute("checked", params.getAll(field.name).indexOf(field.value) !== -1);
    } else if (field.tagName === "SELECT") {
      var wanted = params.has(field.name) ? params.get(field.name) : "";
      field.querySelectorAll("option").forEach(function (option) { option.toggleAttribute("selected", option.value === wanted); });
    } else if (field.tagName === "TEXTAREA") {
      field.textContent = params.get(field.name) || "";
    } else {
      field.setAttribute("value", params.get(field.name) || "");
    }
  }

  document.addEventListener("htmx:beforeHistorySave", function (event) {
    // An empty style attribute left by a tool that styled an element for a moment (axe-core does)
    // would make the restored copy break the Content-Security-Policy, which allows no inline style.
    document.querySelectorAll("[style='']").forEach(function (element) { element.removeAttribute("style"); });
    // The address the copy is saved under (on Back, the browser's address has already moved on).
    var saved = (event.detail && event.detail.path) || window.location.pathname + window.location.search;
    var params = new URL(saved, window.location.href).searchParams;
    document.querySelectorAll("input, textarea, select").forEach(function (field) {
      if (field.type === "file" || field.type === "password" || field.type === "hidden") return;
      if (field.form && field.name && field.form.method === "get") {
        fromAddress(field, params);
        return;
      }
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

// Upload form: a progress bar while the browser sends the file, a hint when the file's first row looks
// like a header, and the typed confirmation shown only for the modes that remove members.
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
      // Only a hint: the box is the person's answer, so it is never ticked or unticked for them (a box
      // ticked behind their back made a real key the header, and Space then unticked it).
      var hint = document.createElement("small");
      hint.className = "header-hint";
      hint.setAttribute("role", "status");
      hint.hidden = true;
      (header.closest("div") || header.parentNode).appendChild(hint);
      var suspected = "";
      var showHint = function () {
        hint.textContent = suspected ? "The first row looks like a header (\u201c" + suspected +
          "\u201d): tick the box if it is one." : "";
        hint.hidden = !suspected || header.checked;
      };
      header.addEventListener("change", showHint);
      file.addEventListener("change", function () {
        suspected = "";
        showHint();
        if (!file.files.length) return;
        var reader = new FileReader();
        reader.onload = function () {
          // The first row that is not blank, as the checker reads it (Excel's "sep=," line is skipped).
          var rows = String(reader.result).replace(/^\uFEFF/, "").split(/\r\n|\r|\n/);
          if (/^sep=.$/i.test(rows[0] || "")) rows.shift();
          var first = rows.filter(function (row) { return row.split(",")[0].trim() !== ""; })[0] || "";
          var cell = first.split(",")[0].trim().replace(/^"|"$/g, "").trim();
          suspected = HEADER_WORDS.indexOf(cell.toLowerCase()) !== -1 ? cell : "";
          showHint();
        };
        reader.readAsText(file.files[0].slice(0, 4096));
      });
    }
    var approvals = form.querySelector(".approvals-choice");
    function toggle() {
      var chosen = form.querySelector("[name=mode]:checked");
      // What is shown only for some modes (the number to type, the button that sends) says which in
      // data-modes; without JavaScript everything shows and the server decides by the mode chosen.
      form.querySelectorAll("[data-modes]").forEach(function (box) {
        box.hidden = !(chosen && box.getAttribute("data-modes").split(" ").indexOf(chosen.value) !== -1);
      });
      // Remove goes as context-target updates, which LaunchDarkly's import approvals do not cover.
      if (approvals) approvals.hidden = !!(chosen && chosen.value === "remove");
      // The one number field is read with what to type for the chosen mode ("Replace: type 2 to
      // confirm…"), not only with its general label; its own help and error stay in its description.
      var typed = form.querySelector("[name=confirm_removed]");
      if (typed) {
        var described = (typed.getAttribute("aria-describedby") || "").split(" ").filter(function (id) {
          return id && !/^confirm-.+-words$/.test(id);
        });
        var words = chosen && document.getElementById("confirm-" + chosen.value + "-words");
        if (words && form.contains(words)) described.unshift(words.id);
        if (described.length) typed.setAttribute("aria-describedby", described.join(" "));
        else typed.removeAttribute("aria-describedby");
      }
    }
    form.querySelectorAll("[name=mode]").forEach(function (radio) { radio.addEventListener("change", toggle); });
    toggle();
  }

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

// When the server cannot be reached, answers with an error or does not answer, say so in one place under
// the header. Without this a poll that fails leaves the last status on screen as if nothing were wrong,
// and a search or form sent through htmx that fails does nothing at all.
(function () {
  "use strict";
  var REGION_ID = "connection-status";
  // "Reconnected." stays this long (app.css fades it out over its last second), then the notice is empty.
  var RECOVERED_MS = 4000;
  // htmx waits for ever by default, and a poll still waiting holds back every later poll of its element:
  // a connection that hangs instead of failing would freeze the statuses without a word.
  var MIN_POLL_TIMEOUT_MS = 10000;
  var POLL_WORDS = " — the statuses on this page may be out of date. Retrying…";
  var PROBLEM_TEXT = {
    poll: {
      connection: "Connection lost" + POLL_WORDS,
      timeout: "The server is not answering" + POLL_WORDS,
      server: "The server had a problem" + POLL_WORDS
    },
    action: {
      connection: "Connection lost — the server could not be reached. Check your connection, then try again.",
      timeout: "The server took too long to answer. Reload the page to see whether it was done before you try again.",
      server: "The server had a problem and could not do that. Try again in a minute; if it keeps happening, tell an administrator.",
      refused: "The server did not accept that (error {status}). Reload the page, then try again; if it keeps happening, tell an administrator."
    }
  };
  var RECOVERED_TEXT = { connection: "Reconnected.", timeout: "Reconnected.", server: "The server is answering again." };

  var problem = null;  // {kind, poll}: what the notice says is wrong, or null
  var shown = { text: "", tone: "" };
  var clearTimer = null;

  // The element that asked: htmx names another in `elt` when the one that asked was swapped away.
  function asker(event) {
    var detail = event.detail || {};
    return (detail.requestConfig && detail.requestConfig.elt) || detail.elt || event.target;
  }

  function isPoll(elt) {
    var trigger = elt && elt.getAttribute && elt.getAttribute("hx-trigger");
    return !!trigger && /^\s*every\s/.test(trigger);
  }

  function pollIntervalMs(elt) {
    var match = /^\s*every\s+(\d+(?:\.\d+)?)\s*(ms|s|m)?/.exec(elt.getAttribute("hx-trigger"));
    if (!match) return 0;
    var unit = match[2] === "ms" ? 1 : match[2] === "m" ? 60000 : 1000;
    return parseFloat(match[1]) * unit;
  }

  // The live region exists, empty, from the start: a screen reader announces changes to a region it
  // already knows, not one that appears with its words already in it. A page htmx brings back from its
  // history (or fetches whole) may hold a stale copy of it, or none.
  function region() {
    var box = document.getElementById(REGION_ID);
    if (box) return box;
    box = document.createElement("div");
    box.id = REGION_ID;
    box.className = "container connection-status";
    box.setAttribute("role", "status");
    box.setAttribute("aria-live", "polite");
    var header = document.querySelector("body > header");
    if (header) header.insertAdjacentElement("afterend", box);
    else document.body.insertAdjacentElement("afterbegin", box);
    return box;
  }

  function render() {
    var box = region();
    var current = box.firstElementChild;
    if (!shown.text) {
      if (box.firstChild) box.textContent = "";
      return;
    }
    if (current && current.textContent === shown.text && current.classList.contains("connection-" + shown.tone)) return;
    var line = document.createElement("p");
    line.className = "connection-" + shown.tone;
    line.textContent = shown.text;
    box.replaceChildren(line);
  }

  function show(text, tone) {
    clearTimeout(clearTimer);
    shown = { text: text, tone: tone };
    render();
  }

  // A form whose answer never came must not stay locked: its once-only buttons work again and the
  // upload's progress bar no longer claims a transfer is under way.
  function release(elt) {
    var form = elt.closest ? elt.closest("form") : null;
    var scope = form || elt;
    if (!scope.querySelectorAll) return;
    scope.querySelectorAll("button[data-once]").forEach(function (button) {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    });
    var progress = scope.querySelector("#upload-progress");
    if (progress) {
      progress.hidden = true;
      progress.value = 0;
    }
  }

  function failed(event, kind) {
    var detail = event.detail || {};
    var elt = asker(event);
    var poll = isPoll(elt);
    var status = detail.xhr ? detail.xhr.status : 0;
    // A poll refused (4xx) is not a connection problem; the page's own answer deals with it.
    if (kind === "refused" && poll) return;
    if (!poll) release(elt);
    // What went wrong with what the person just did says more than the poll failing beside it.
    if (poll && problem && !problem.poll) return;
    problem = { kind: kind, poll: poll };
    show(PROBLEM_TEXT[poll ? "poll" : "action"][kind].replace("{status}", status), "problem");
  }

  function succeeded(elt) {
    if (!problem) return;
    var poll = isPoll(elt);
    var connectionBack = problem.kind === "connection" || problem.kind === "timeout";
    // A poll answering says nothing about the search or form that met a server error: that notice
    // stays until the person's next request goes through.
    if (!connectionBack && !problem.poll && poll) return;
    var was = problem;
    problem = null;
    if (!connectionBack && !was.poll) {
      show("", "");
      return;
    }
    show(RECOVERED_TEXT[was.kind], "ok");
    clearTimer = setTimeout(function () { show("", ""); }, RECOVERED_MS);
  }

  document.addEventListener("htmx:configRequest", function (event) {
    var detail = event.detail;
    if (detail.timeout || !isPoll(detail.elt)) return;
    detail.timeout = Math.max(MIN_POLL_TIMEOUT_MS, 5 * pollIntervalMs(detail.elt));
  });
  document.addEventListener("htmx:sendError", function (event) { failed(event, "connection"); });
  document.addEventListener("htmx:timeout", function (event) { failed(event, "timeout"); });
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    failed(event, status >= 500 ? "server" : "refused");
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var xhr = event.detail.xhr;
    if (xhr && xhr.status >= 200 && xhr.status < 400) succeeded(asker(event));
  });
  // Back and Forward bring back a copy of the page taken earlier, with the notice as it was then.
  document.addEventListener("htmx:historyRestore", render);
  region();
})();
