// flow-ci run visualize: draws the runs from the JSON element above. Every
// piece of run data goes into the page as text (textContent), never markup.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("flow-ci-data").textContent);

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  function runTitle(run) {
    var th = el("th", {}, [run.name]);
    if (run.label) th.appendChild(el("span", { "class": "label" }, [run.label]));
    return th;
  }

  document.title = data.title;
  document.body.appendChild(el("h1", {}, [data.title]));

  // The runs: status, lines, where they came from.
  var runs = el("table", { "class": "runs" }, [
    el("tr", {}, ["run", "status", "lines", "failed", "flow", "created"].map(function (h) { return el("th", {}, [h]); }))
  ]);
  data.runs.forEach(function (run) {
    runs.appendChild(el("tr", {}, [
      runTitle(run),
      el("td", { "class": "status-" + run.status }, [run.status]),
      el("td", { "class": "num" }, [run.metrics_only ? "metrics only" : String(run.completed) + " of " + String(run.total)]),
      el("td", { "class": "num" }, [String(run.failed)]),
      el("td", {}, [run.flow]),
      el("td", {}, [run.created_on])
    ]));
  });
  document.body.appendChild(el("h2", {}, ["Runs"]));
  document.body.appendChild(runs);

  // Metrics side by side, each with its change from the first run.
  document.body.appendChild(el("h2", {}, ["Metrics"]));
  if (data.metrics.length === 0) {
    document.body.appendChild(el("p", { "class": "muted" }, ["No run has metrics."]));
  } else {
    var head = el("tr", {}, [el("th", {}, ["metric"])]);
    data.runs.forEach(function (run) { head.appendChild(runTitle(run)); });
    var metrics = el("table", { "class": "metrics", id: "metrics" }, [head]);
    data.metrics.forEach(function (m) {
      var tr = el("tr", {}, [el("th", {}, [m.name])]);
      m.values.forEach(function (v, i) {
        var td = el("td", { "class": "num" }, [v === null ? "–" : v]);
        var d = m.deltas[i];
        if (i > 0 && d !== null && d !== 0) {
          td.appendChild(el("span", { "class": d > 0 ? "up" : "down" }, [" (" + (d > 0 ? "+" : "") + Number(d.toPrecision(6)) + ")"]));
        }
        tr.appendChild(td);
      });
      metrics.appendChild(tr);
    });
    document.body.appendChild(metrics);
  }

  // Lines: inputs, then each run's outputs; a differing output shows its word diff.
  document.body.appendChild(el("h2", {}, ["Lines"]));
  var filter = el("input", { type: "search", id: "filter", placeholder: "filter: text in inputs, outputs or errors" });
  var failedOnly = el("input", { type: "checkbox", id: "failed" });
  var differingOnly = el("input", { type: "checkbox", id: "differing" });
  var shown = el("span", { id: "shown" });
  document.body.appendChild(el("div", { "class": "controls" }, [
    filter,
    el("label", {}, [failedOnly, " failed only"]),
    el("label", {}, [differingOnly, " differing only"]),
    shown
  ]));

  function kv(key, children) {
    return el("div", { "class": "kv" }, [el("b", {}, [key]), el("pre", {}, children)]);
  }

  var lineRuns = data.runs.filter(function (r) { return !r.metrics_only; });
  var header = el("tr", {}, [el("th", {}, ["line"]), el("th", {}, ["inputs"])]);
  lineRuns.forEach(function (run) { header.appendChild(runTitle(run)); });
  var table = el("table", { "class": "lines", id: "lines" }, [header]);
  var rows = data.lines.map(function (line) {
    var tr = el("tr", { "class": "line" + (line.differs ? " differs" : ""), "data-line": String(line.line) }, [
      el("td", { "class": "num" }, [String(line.line)]),
      el("td", {}, line.inputs.map(function (p) { return kv(p[0], [p[1]]); }))
    ]);
    var words = [];
    line.inputs.forEach(function (p) { words.push(p[0], p[1]); });
    line.cells.forEach(function (cell) {
      var td = el("td", { "class": cell.status });
      if (cell.status !== "Completed") td.appendChild(el("div", { "class": "status-" + cell.status }, [cell.status]));
      if (cell.error) { td.appendChild(el("pre", { "class": "error" }, [cell.error])); words.push(cell.error); }
      cell.outputs.forEach(function (o) {
        words.push(o.key, o.text);
        if (o.diff) {
          td.appendChild(kv(o.key, o.diff.map(function (piece) {
            var tag = piece[0] === "-" ? "del" : piece[0] === "+" ? "ins" : "span";
            return el(tag, {}, [piece[1]]);
          })));
        } else {
          td.appendChild(kv(o.key, [o.text]));
        }
      });
      words.push(cell.status);
      tr.appendChild(td);
    });
    table.appendChild(tr);
    return { tr: tr, text: words.join("\n").toLowerCase(), failed: line.failed, differs: line.differs };
  });
  document.body.appendChild(table);

  function apply() {
    var q = filter.value.trim().toLowerCase();
    var count = 0;
    rows.forEach(function (row) {
      var visible = (q === "" || row.text.indexOf(q) !== -1) &&
        (!failedOnly.checked || row.failed) && (!differingOnly.checked || row.differs);
      row.tr.hidden = !visible;
      if (visible) count += 1;
    });
    shown.textContent = count + " of " + rows.length + " lines shown";
  }

  // The filter can be set by the address: #q=text&failed=1&differing=1.
  var params = new URLSearchParams(location.hash.replace(/^#/, ""));
  filter.value = params.get("q") || "";
  failedOnly.checked = params.get("failed") === "1";
  differingOnly.checked = params.get("differing") === "1";
  [filter, failedOnly, differingOnly].forEach(function (c) { c.addEventListener("input", apply); });
  failedOnly.addEventListener("change", apply);
  differingOnly.addEventListener("change", apply);
  apply();
})();
