// aib dev's monitoring dashboard: fetches /dashboard/data.json and draws SVG line charts.
// No library and nothing from the internet; redraws every REFRESH_MS.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const REFRESH_MS = 5000;
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
  "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31"];
const THRESHOLD = "#d62728";
const W = 440, H = 210, M = { l: 50, r: 14, t: 10, b: 36 };
const SCORE_LABELS = { p5: "5th pct", p25: "25th pct", p50: "median", p75: "75th pct", p95: "95th pct" };
const GAP_LABELS = { demographic_parity: "selection-rate gap", true_positive_rate: "TPR gap",
  false_positive_rate: "FPR gap" };

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function html(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// About n round ticks covering [lo, hi].
function ticks(lo, hi, n) {
  const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => raw <= s);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function timeLabel(ms, spanMs) {
  const iso = new Date(ms).toISOString();
  return spanMs > 36 * 3600e3 ? iso.slice(5, 10) + " " + iso.slice(11, 13) + "h" : iso.slice(11, 16);
}

function number(v) {
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(1) : v.toFixed(3);
}

// series: [{name, points: [[ms, value|null]], dash?, color?, marks?: [bool]}]
// opts: {id, title, yLabel, yMin, yMax}
function chart(opts, series) {
  const fig = html("figure", { class: "chart", "data-chart": opts.id });
  fig.appendChild(html("figcaption", {}, opts.title));
  const legend = fig.appendChild(html("ul", { class: "legend" }));
  const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null));
  if (!all.length) {
    fig.appendChild(html("p", { class: "note" }, "no values in these windows yet"));
    return fig;
  }
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  let x0 = Math.min(...xs), x1 = Math.max(...xs);
  if (x0 === x1) { x0 -= 1800e3; x1 += 1800e3; }
  let y0 = opts.yMin !== undefined ? Math.min(opts.yMin, ...ys) : Math.min(...ys);
  let y1 = opts.yMax !== undefined ? Math.max(opts.yMax, ...ys) : Math.max(...ys);
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const px = (t) => M.l + ((t - x0) / (x1 - x0)) * (W - M.l - M.r);
  const py = (v) => H - M.b - ((v - y0) / (y1 - y0)) * (H - M.t - M.b);
  const root = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img" });
  for (const v of ticks(y0, y1, 4)) {
    root.appendChild(svg("line", { class: "gridline", x1: M.l, x2: W - M.r, y1: py(v), y2: py(v) }));
    root.appendChild(svg("text", { x: M.l - 4, y: py(v) + 3, "text-anchor": "end" }, number(v)));
  }
  const xt = [...new Set(xs)].sort((a, b) => a - b);
  const every = Math.max(1, Math.ceil(xt.length / 6));
  xt.filter((_, i) => i % every === 0).forEach((t) => {
    root.appendChild(svg("line", { class: "axis", x1: px(t), x2: px(t), y1: H - M.b, y2: H - M.b + 4 }));
    root.appendChild(svg("text", { x: px(t), y: H - M.b + 14, "text-anchor": "middle" }, timeLabel(t, x1 - x0)));
  });
  root.appendChild(svg("line", { class: "axis", x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b }));
  root.appendChild(svg("line", { class: "axis", x1: M.l, x2: M.l, y1: M.t, y2: H - M.b }));
  root.appendChild(svg("text", { x: (M.l + W - M.r) / 2, y: H - 4, "text-anchor": "middle" }, "time (UTC)"));
  root.appendChild(svg("text", { x: 12, y: (M.t + H - M.b) / 2, "text-anchor": "middle",
    transform: `rotate(-90 12 ${(M.t + H - M.b) / 2})` }, opts.yLabel));
  series.forEach((s, i) => {
    const color = s.color || COLORS[i % COLORS.length];
    const g = root.appendChild(svg("g", { "data-series": s.name }));
    let run = [];
    const flush = () => {
      if (run.length) g.appendChild(svg("polyline", { fill: "none", stroke: color, "stroke-width": 1.8,
        "stroke-dasharray": s.dash ? "6 4" : "none", points: run.join(" ") }));
      run = [];
    };
    s.points.forEach(([t, v], k) => {
      if (v === null) { flush(); return; }
      run.push(`${px(t).toFixed(1)},${py(v).toFixed(1)}`);
      if (s.dash) return;
      const drifted = s.marks && s.marks[k];
      const dot = g.appendChild(svg("circle", { cx: px(t), cy: py(v), r: drifted ? 4 : 2.5,
        fill: drifted ? THRESHOLD : color, class: drifted ? "drifted" : "point" }));
      dot.appendChild(svg("title", {}, `${s.name} ${new Date(t).toISOString().slice(0, 16)}Z: ${number(v)}`));
    });
    flush();
    const item = legend.appendChild(html("li", { "data-series": s.name }));
    item.appendChild(html("span", { style: `background:${color}` }));
    item.appendChild(document.createTextNode(s.name));
  });
  fig.appendChild(root);
  return fig;
}

const at = (iso) => Date.parse(iso);

function empty(container, text) {
  container.appendChild(html("p", { class: "empty" }, text));
}

function driftCharts(model, box) {
  for (const c of model.drift) {
    const pts = c.points;
    const test = pts.map((p) => p.test).filter(Boolean).pop() || "no test";
    box.appendChild(chart({ id: `drift-${c.column}`, title: `${c.column} (${c.role})`, yLabel: test, yMin: 0 }, [
      { name: `${test} statistic`, points: pts.map((p) => [at(p.start), p.statistic]), marks: pts.map((p) => p.drifted) },
      { name: "threshold", points: pts.map((p) => [at(p.start), p.threshold]), dash: true, color: THRESHOLD },
    ]));
  }
}

function scoreChart(model, box) {
  const withQ = model.scores.filter((p) => Object.keys(p.quantiles).length);
  if (!withQ.length) return empty(box, "no scores in these windows' profiles");
  box.appendChild(chart({ id: "scores", title: `${model.model} score quantiles per ${model.span}`, yLabel: "score", yMin: 0, yMax: 1 },
    Object.keys(SCORE_LABELS).map((q) => ({ name: SCORE_LABELS[q], key: q,
      points: withQ.map((p) => [at(p.start), p.quantiles[q]]) }))));
}

function accuracyChart(model, box) {
  const a = model.accuracy, t = (p) => at(p.start);
  box.appendChild(chart({ id: "accuracy", title: "accuracy of labelled predictions", yLabel: "share", yMin: 0, yMax: 1 }, [
    { name: "ROC AUC", points: a.map((p) => [t(p), p.roc_auc]) },
    { name: "precision", points: a.map((p) => [t(p), p.precision]) },
    { name: "recall", points: a.map((p) => [t(p), p.recall]) },
    { name: "label completeness", points: a.map((p) => [t(p), p.completeness]) },
  ]));
}

function biasCharts(model, box) {
  if (!model.bias.length) return empty(box, "no labelled predictions with sensitive attributes yet: labels arrive through POST /v1/feedback or labels/<model>/*.csv");
  for (const a of model.bias) {
    const gaps = Object.entries(a.gaps).map(([m, pts]) => ({ name: GAP_LABELS[m] || m,
      points: pts.map((p) => [at(p.start), p.value]), marks: pts.map((p) => p.flagged) }));
    const starts = model.windows.map((w) => at(w.start));
    gaps.push({ name: "tolerance", points: starts.map((t) => [t, a.tolerance]), dash: true, color: THRESHOLD });
    box.appendChild(chart({ id: `bias-gaps-${a.attribute}`, title: `${a.attribute}: gaps between groups`, yLabel: "gap", yMin: 0 }, gaps));
    box.appendChild(chart({ id: `bias-groups-${a.attribute}`, title: `${a.attribute}: selection rate per group`, yLabel: "selection rate", yMin: 0 },
      Object.entries(a.groups).map(([g, pts]) => ({ name: g, points: pts.map((p) => [at(p.start), p.selection_rate]) }))));
  }
}

function functionCharts(data, latency, errors) {
  for (const f of data.functions) {
    latency.appendChild(chart({ id: `latency-${f.function}`, title: `${f.function} (${f.invocations} invocations)`, yLabel: "ms per minute", yMin: 0 }, [
      { name: "p50", points: f.points.map((p) => [at(p.start), p.p50_ms]) },
      { name: "p99", points: f.points.map((p) => [at(p.start), p.p99_ms]) },
    ]));
  }
  errors.appendChild(chart({ id: "errors", title: "errors per minute", yLabel: "errors", yMin: 0, yMax: 1 },
    data.functions.map((f) => ({ name: `${f.function} (${f.errors})`, points: f.points.map((p) => [at(p.start), p.errors]) }))));
}

function render(data) {
  const ids = ["drift", "scores", "accuracy", "bias", "latency", "errors"];
  const boxes = Object.fromEntries(ids.map((id) => [id, document.getElementById(id)]));
  ids.forEach((id) => boxes[id].replaceChildren());
  const problems = document.getElementById("problems");
  problems.replaceChildren(...data.problems.map((p) => html("p", {}, p)));
  const model = data.model;
  if (data.hints.monitoring || !model) {
    ["drift", "scores", "accuracy", "bias"].forEach((id) => empty(boxes[id], data.hints.monitoring));
  } else {
    const w = model.windows[model.windows.length - 1];
    if (!model.drift.length) empty(boxes.drift, w.problem || "drift was not tested in these windows (no rows profiled)");
    driftCharts(model, boxes.drift);
    scoreChart(model, boxes.scores);
    accuracyChart(model, boxes.accuracy);
    biasCharts(model, boxes.bias);
  }
  if (data.hints.functions) {
    empty(boxes.latency, data.hints.functions);
    empty(boxes.errors, data.hints.functions);
  } else {
    functionCharts(data, boxes.latency, boxes.errors);
  }
}

function syncModels(models, chosen) {
  const select = document.getElementById("model");
  const have = [...select.options].map((o) => o.value);
  if (have.join() !== models.join()) select.replaceChildren(...models.map((m) => html("option", { value: m }, m)));
  if (chosen) select.value = chosen;
}

let inFlight = false;

async function refresh() {
  if (inFlight) return; // a slow read (a first pass over big logs) is not asked for twice
  inFlight = true;
  const q = new URLSearchParams();
  const model = document.getElementById("model").value;
  if (model) q.set("model", model);
  q.set("hours", document.getElementById("hours").value);
  q.set("span", document.getElementById("span").value);
  const updated = document.getElementById("updated");
  try {
    const r = await fetch(`/dashboard/data.json?${q}`, { cache: "no-store" });
    const data = await r.json();
    if (!r.ok) throw new Error(data.detail || r.statusText);
    syncModels(data.models, data.model && data.model.model);
    render(data);
    updated.textContent = `updated ${new Date(data.generated_at).toISOString().slice(11, 19)} UTC`;
    document.body.dataset.loaded = data.generated_at;
  } catch (e) {
    updated.textContent = `refresh failed: ${e.message}`;
  } finally {
    inFlight = false;
  }
}

for (const id of ["model", "hours", "span"]) document.getElementById(id).addEventListener("change", refresh);
refresh();
setInterval(refresh, REFRESH_MS);
