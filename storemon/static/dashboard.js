// storemon dashboard: the "Run report" control. POST /trigger_report (same origin), then poll
// GET /get_report/<id>: JSON {"status": "Running", "state", "stage", "progress"} while it runs,
// the CSV itself (header X-Report-Status: Complete) when done, {"status": "Failed"} if it failed.
(function () {
  "use strict";
  var form = document.getElementById("run-report");
  if (!form) { return; }
  var box = document.getElementById("report-progress");
  var idOut = document.getElementById("report-id");
  var statusOut = document.getElementById("report-status");
  var stageOut = document.getElementById("report-stage");
  var bar = document.getElementById("report-bar");
  var links = document.getElementById("report-links");
  var button = document.getElementById("run-button");
  var POLL_MS = 300;

  function url(template, id) { return template.replace("__id__", encodeURIComponent(id)); }

  function show(status, stage, progress) {
    statusOut.textContent = status;
    stageOut.textContent = stage ? "stage: " + stage : "";
    if (typeof progress === "number") { bar.value = progress; }
  }

  function fail(message) {
    show("Failed", "", 0);
    stageOut.textContent = message;
    button.disabled = false;
  }

  function poll(id) {
    var controller = new AbortController();
    fetch(url(form.dataset.status, id), { credentials: "same-origin", cache: "no-store", signal: controller.signal })
      .then(function (response) {
        if (response.headers.get("X-Report-Status") === "Complete") {
          controller.abort(); // the body is the CSV: the download link fetches it
          show("Complete", "", 1);
          document.getElementById("report-download").href = url(form.dataset.status, id);
          document.getElementById("report-open").href = url(form.dataset.reportPage, id);
          links.hidden = false;
          button.disabled = false;
          return;
        }
        return response.json().then(function (state) {
          if (!response.ok) { fail(state.message || response.statusText); return; }
          if (state.status === "Failed") { fail(state.error || "the report failed"); return; }
          var label = state.state === "queued" ? "Queued" : "Running";
          var pct = Math.round(100 * (state.progress || 0));
          show(label + " (" + pct + " %)", state.stage, state.progress || 0);
          window.setTimeout(function () { poll(id); }, POLL_MS);
        });
      })
      .catch(function (err) {
        if (err && err.name === "AbortError") { return; }
        fail(String(err));
      });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var asOf = form.elements.as_of.value.trim();
    var init = { method: "POST", credentials: "same-origin", headers: {} };
    if (asOf) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify({ as_of: asOf });
    }
    button.disabled = true;
    links.hidden = true;
    box.hidden = false;
    idOut.textContent = "";
    show("Starting", "", 0);
    fetch(form.dataset.trigger, init)
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) { fail(body.message || response.statusText); return; }
          idOut.textContent = body.report_id;
          poll(body.report_id);
        });
      })
      .catch(function (err) { fail(String(err)); });
  });
}());
