// The Live page: follows /runs/<id>/events (server-sent events) and draws per-arm progress and loss.
(function () {
  "use strict";
  var root = document.getElementById("live");
  if (!root || !window.EventSource) { return; }
  var armsBox = document.getElementById("arms");
  var statusBox = document.getElementById("run-status");
  var errorBox = document.getElementById("live-error");
  var arms = {};
  var SVG = "http://www.w3.org/2000/svg";

  function row(name) {
    if (arms[name]) { return arms[name]; }
    var el = document.createElement("div");
    el.className = "arm-progress";
    el.dataset.arm = name;
    var label = document.createElement("strong"); label.textContent = name;
    var bar = document.createElement("div"); bar.className = "bar";
    var fill = document.createElement("span"); bar.appendChild(fill);
    var text = document.createElement("span"); text.className = "muted arm-state"; text.textContent = "waiting";
    var svg = document.createElementNS(SVG, "svg"); svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 100 20"); svg.setAttribute("preserveAspectRatio", "none");
    var line = document.createElementNS(SVG, "polyline"); svg.appendChild(line);
    el.appendChild(label); el.appendChild(bar); el.appendChild(text); el.appendChild(svg);
    armsBox.appendChild(el);
    arms[name] = { el: el, fill: fill, text: text, line: line, losses: [] };
    return arms[name];
  }
  function drawLoss(a) {
    var values = a.losses;
    if (values.length < 2) { return; }
    var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values), span = (hi - lo) || 1;
    var points = values.map(function (v, i) {
      return (i * 100 / (values.length - 1)).toFixed(1) + "," + (19 - (v - lo) * 18 / span).toFixed(1);
    });
    a.line.setAttribute("points", points.join(" "));
    a.line.parentNode.setAttribute("aria-label", "loss " + values[values.length - 1].toFixed(4));
  }
  function setStatus(status, message) {
    statusBox.textContent = status;
    statusBox.className = "status status-" + status;
    if (message) { errorBox.textContent = message; errorBox.hidden = false; }
  }
  var source = new EventSource(root.dataset.events);
  source.onmessage = function (message) {
    var e = JSON.parse(message.data);
    if (e.kind === "run_started") { setStatus("running"); (e.arms || []).forEach(row); }
    else if (e.kind === "arm_started") { row(e.arm).text.textContent = "started"; }
    else if (e.kind === "progress") {
      var a = row(e.arm), share = e.total ? e.done / e.total : 1;
      a.fill.style.width = Math.round(share * 100) + "%";
      a.text.textContent = e.stage + ": " + e.done + "/" + e.total;
    }
    else if (e.kind === "train_loss" && typeof e.loss === "number") {
      var t = row(e.arm); t.losses.push(e.loss); drawLoss(t);
    }
    else if (e.kind === "arm_finished") {
      var f = row(e.arm); f.text.textContent = e.status; f.el.dataset.status = e.status;
      if (e.status === "completed") { f.fill.style.width = "100%"; }
    }
    else if (e.kind === "run_completed" || e.kind === "run_failed" || e.kind === "run_ended") {
      setStatus(e.status || (e.kind === "run_completed" ? "completed" : "failed"), e.error || e.message);
      document.getElementById("live-done").hidden = false;
      source.close();
    }
  };
}());
