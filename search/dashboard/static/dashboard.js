// The dashboard's pages: fill the skeleton from the JSON endpoints and poll them, so a running job's new results
// show without a reload. Values from the database are untrusted: they only ever go into textContent.
"use strict";

const body = document.body;
const POLL_MS = Number(body.dataset.pollMs) || 2000;
const REF = { folder: body.dataset.folder, job: body.dataset.job };
const LEGEND = { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" };  // above the plot, clear of the axis title
let selected = null;  // the candidate whose program and lineage are shown

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function fitness(v) {
  if (v === null || v === undefined) return "-";
  const a = Math.abs(v);
  return v === 0 || (a >= 1e-3 && a < 1e6) ? v.toFixed(4) : v.toPrecision(4);
}

function percent(v) { return v === null || v === undefined ? "-" : (100 * v).toFixed(1) + "%"; }

function progress(p) {
  if (!p || p.done === null || p.done === undefined) return "-";
  const unit = (p.unit || "unit") + "s";
  return p.total ? `${p.done}/${p.total} ${unit}` : `${p.done} ${unit}`;
}

function fillRows(table, rows, cells, onClick) {
  const tbody = table.querySelector("tbody");
  tbody.replaceChildren(...rows.map((row) => {
    const tr = el("tr");
    for (const [value, cls] of cells(row)) tr.appendChild(el("td", value, cls));
    if (onClick) { tr.classList.add("clickable"); tr.addEventListener("click", () => onClick(row, tr)); }
    return tr;
  }));
  return tbody;
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function query(extra) {
  const params = new URLSearchParams();
  if (REF.folder) params.set("folder", REF.folder);
  params.set("job", REF.job);
  for (const [k, v] of Object.entries(extra || {})) params.set(k, v);
  return params.toString();
}

const lastSeen = {};  // the text each polled endpoint answered last: unchanged data is not drawn again

async function getJSON(url, { onlyChanged = false } = {}) {
  const response = await fetch(url, { cache: "no-store" });
  const text = await response.text();
  if (onlyChanged && lastSeen[url] === text) return null;
  let data;
  try { data = JSON.parse(text); } catch (e) { throw new Error(`${url}: ${response.status} ${response.statusText}`); }
  if (onlyChanged) lastSeen[url] = text;
  return data;
}

function stamp() { document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString(); }

// -- runs list ---------------------------------------------------------------------------------------------------

async function refreshRuns() {
  const data = await getJSON("api/runs", { onlyChanged: true });
  if (data === null) return;  // nothing new: leave the page as it is (a selection, a hover)
  showError(data.error);
  const good = data.runs.filter((r) => !r.error);
  const bad = data.runs.filter((r) => r.error);
  const tbody = fillRows(document.getElementById("runs"), good, (r) => [
    [r.name], [r.kind], [r.method], [r.status], [progress(r.progress)], [r.candidates, "num"],
    [r.evaluations, "num"], [r.failed, "num"], [`${r.cache_hits} (${percent(r.cache_hit_rate)})`, "num"],
    // one meaning per column: ratios to AdamW (optimizer searches) and accuracies (architecture jobs) apart
    [r.best_measure === "adamw_ratio" ? fitness(r.best_fitness) : "-", "num"],
    [r.best_measure === "accuracy" ? fitness(r.best_fitness) : "-", "num"], [new Date(r.updated).toLocaleString()],
  ]);
  good.forEach((r, i) => {  // the name links to the run's page
    const cell = tbody.children[i].firstChild;
    const link = el("a", r.name);
    const params = new URLSearchParams();
    if (r.folder !== null) params.set("folder", r.folder);
    params.set("job", r.name);
    link.href = "run?" + params.toString();
    cell.replaceChildren(link);
  });
  document.getElementById("no-runs").hidden = data.runs.length > 0 || !!data.error;
  document.getElementById("unreadable").replaceChildren(...bad.map((r) => {
    const li = el("li", `${r.name}: unreadable: ${r.error}`);
    if (r.folder !== null) {
      const link = el("a", " (open)");
      link.href = "run?" + new URLSearchParams({ folder: r.folder }).toString();
      li.appendChild(link);
    }
    return li;
  }));
}

// -- one run -----------------------------------------------------------------------------------------------------

function card(label, value, id) {
  const box = el("div", null, "card");
  box.appendChild(el("div", label, "label"));
  const v = el("div", value, "value");
  if (id) v.id = id;
  box.appendChild(v);
  return box;
}

function renderSummary(s) {
  document.getElementById("summary").replaceChildren(
    card("job", `${s.method || "-"} (${s.kind})`), card("status", s.status, "status"),
    card("progress", progress(s.progress), "progress"), card("candidates", s.candidates, "candidates"),
    card("evaluations", `${s.evaluations} (${s.ok} ok, ${s.failed} failed)`, "evaluations"),
    card("pending", s.pending), card("cache hits", `${s.cache_hits} (${percent(s.cache_hit_rate)})`, "cache"),
    card("best", fitness(s.best_fitness), "best"),
  );
}

function renderCurve(c) {
  const section = document.getElementById("search-section");
  section.hidden = !c || c.evaluations === 0;  // none for NAS jobs: their epochs are drawn instead
  if (section.hidden) return;
  const x = c.x;  // evaluations run (cache hits not counted), as runs show counts them
  const note = c.every > 1 ? ` (every ${c.every}th shown)` : "";
  const xticks = c.evaluations <= 10 ? { dtick: 1 } : {};  // whole evaluations only
  Plotly.react("curve", [
    { x, y: c.fitness, mode: "markers", name: "fitness", marker: { size: 4, color: "#9ab" } },
    { x, y: c.median, mode: "lines", name: `median of last ${c.window}`, line: { color: "#e69f00" } },
    { x, y: c.best, mode: "lines", name: "best so far", line: { color: "#0072b2", width: 2.5, shape: "hv" } },
  ], { margin: { t: 30, r: 10 }, xaxis: { title: { text: "evaluations" + note }, ...xticks },
       yaxis: { title: { text: "fitness" } }, legend: LEGEND }, { displaylogo: false, responsive: true });
  Plotly.react("hits", [
    { x, y: c.hit_rate, mode: "lines", name: `last ${c.window}` },
    { x, y: c.cumulative_hit_rate, mode: "lines", name: "all so far" },
  ], { margin: { t: 30, r: 10 }, xaxis: { title: { text: "evaluations" }, ...xticks },
       yaxis: { title: { text: "hit rate" }, range: [0, 1] }, legend: LEGEND },
     { displaylogo: false, responsive: true });
}

function renderFailures(failures) {
  fillRows(document.getElementById("failures"), failures, (f) => [[f.count, "num"], [f.reason], [f.example]]);
  document.getElementById("no-failures").hidden = failures.length > 0;
}

function renderTop(top) {
  const tbody = fillRows(document.getElementById("top"), top, (r) => [
    [r.rank, "num"], [r.id, "num"], [r.hash.slice(0, 10)], [fitness(r.fitness), "num"], [r.status], [r.birth, "num"],
    [r.parent_ids.join(",") || "-"], [r.mutation || "-"],
  ], (row) => selectCandidate(row.id));
  [...tbody.children].forEach((tr, i) => tr.classList.toggle("selected", top[i].id === selected));
  document.getElementById("no-top").hidden = top.length > 0;
}

function renderDiff(pre, diff) {
  if (!diff) { pre.textContent = "(no recorded parent)"; return; }
  pre.replaceChildren(...diff.split("\n").map((line) => {
    const cls = line.startsWith("+++") || line.startsWith("---") ? "" : line.startsWith("+") ? "add"
      : line.startsWith("-") ? "del" : line.startsWith("@@") ? "hunk" : "";
    const span = el("span", line + "\n", cls);
    return span;
  }));
}

async function selectCandidate(id) {
  selected = id;
  const data = await getJSON("api/lineage?" + query({ candidate: id }));
  if (data.error) { showError(data.error); return; }
  const rows = data.lineage.rows;
  const me = rows[0];
  document.getElementById("candidate-section").hidden = false;
  document.getElementById("candidate-title").textContent =
    `Candidate ${me.id} · hash ${me.hash.slice(0, 10)} · fitness ${fitness(me.fitness)} (${me.status})`;
  document.getElementById("candidate-program").textContent = me.program;
  renderDiff(document.getElementById("candidate-diff"), me.diff);
  const tbody = fillRows(document.getElementById("lineage"), rows, (r) => [
    ["\u2003".repeat(r.depth) + r.depth], [r.id, "num"], [r.hash.slice(0, 10)], [fitness(r.fitness), "num"],
    [r.status], [r.birth, "num"], [r.parent_ids.join(",") || "-"], [r.mutation || "-"],
  ], (row) => selectCandidate(row.id));
  tbody.firstChild.classList.add("selected");
  document.querySelectorAll("#top tbody tr").forEach((tr) => tr.classList.remove("selected"));
}

function renderFunnel(f) {
  const section = document.getElementById("funnel-section");
  section.hidden = !f;
  if (!f) return;
  document.getElementById("funnel-job").textContent = `(${f.job}, ${f.status})`;
  const note = document.getElementById("funnel-unseen");
  if (f.error) {
    document.getElementById("funnel-baseline").textContent = f.error;
    note.textContent = "";
    return;
  }
  const head = el("tr");  // the stage columns come with the data: a scale stage's ratio, each unseen task, the wins
  for (const h of ["candidate", "hash", "proxy", ...f.columns.map((c) => c.title), "result"]) {
    head.appendChild(el("th", h));
  }
  document.querySelector("#funnel thead").replaceChildren(head);
  fillRows(document.getElementById("funnel"), f.rows, (r) => [
    ["#" + r.id], [r.hash.slice(0, 10)], [fitness(r.proxy), "num"], ...f.columns.map((c) => [r.cells[c.key], "num"]),
    [r.verdict],
  ]);
  const base = f.baseline.map((b) => `${b.stage} ${b.task}${b.seed === null ? "" : ` seed ${b.seed}`}: ` +
    fitness(b.fitness) + (b.lr === null ? "" : ` (lr ${b.lr.toPrecision(3)})`)).join("; ");
  document.getElementById("funnel-baseline").textContent = f.baseline_id === null
    ? "AdamW's sweeps are not recorded yet."
    : `AdamW (#${f.baseline_id}) tuned fitness: ${base || "-"}. Ratio = tuned fitness / AdamW's, must be > 1.`;
  note.textContent = f.unseen.length
    ? `Unseen tasks (never used by the search): ${f.unseen.join(", ")}; ${f.seeds} seeds each, ratio = mean over ` +
      `seeds of the ratio to AdamW at the same seed [95 % interval: ${f.interval}]; a win = mean ratio > 1; ` +
      "passing needs wins on at least half of them."
    : "";
}

function renderPareto(p) {
  const section = document.getElementById("pareto-section");
  section.hidden = !p;  // only --strategy nsga2 optimizer runs
  if (!p) return;
  const unparsed = p.unparsed === 1 ? " (1 whose program does not parse is not drawn)"
    : p.unparsed ? ` (${p.unparsed} whose programs do not parse are not drawn)` : "";
  document.getElementById("pareto-count").textContent =
    `${p.front.length} on the front of ${p.candidates} candidates${unparsed}`;
  const tbody = fillRows(document.getElementById("pareto"), p.front, (r) => [
    [r.rank, "num"], [r.id, "num"], [r.hash.slice(0, 10)], [fitness(r.fitness), "num"], [r.buffers, "num"], [null],
  ], (row) => selectCandidate(row.id));
  [...tbody.children].forEach((tr, i) => {  // the simplified program, as runs top prints it
    const r = p.front[i];
    const pre = el("pre", r.program);
    const dead = r.removed === 1 ? "1 dead statement" : `${r.removed} dead statements`;
    pre.title = r.removed ? `simplified: ${dead} of ${r.statements} removed` : "";
    tr.lastChild.replaceChildren(pre);
  });
  document.getElementById("no-pareto").hidden = p.front.length > 0;
  const front = [...p.front].sort((a, b) => a.buffers - b.buffers);
  const most = p.points.buffers.reduce((a, b) => Math.max(a, b), 0);  // no spread: a long run has many points
  const hover = "%{text}: fitness %{y}, %{x} buffers<extra></extra>";
  Plotly.react("pareto-plot", [
    { x: p.points.buffers, y: p.points.fitness, text: p.points.id.map((id) => `#${id}`), mode: "markers",
      name: p.points.every > 1 ? `candidates (every ${p.points.every}th by rank)` : "candidates",
      marker: { size: 7, color: "#56779a", opacity: 0.6 }, hovertemplate: hover },
    { x: front.map((r) => r.buffers), y: front.map((r) => r.fitness), text: front.map((r) => `#${r.id}`),
      mode: "lines+markers", name: "Pareto front", line: { color: "#d55e00", shape: "hv" },
      marker: { size: 13, symbol: "circle-open", color: "#d55e00", line: { width: 2 } }, hovertemplate: hover },
  ], { margin: { t: 30, r: 10 },
       xaxis: { title: { text: "optimizer state buffers" }, dtick: 1, range: [-0.3, most + 0.3] },
       yaxis: { title: { text: "fitness" } }, legend: LEGEND }, { displaylogo: false, responsive: true });
}

function renderEpochs(e) {
  const section = document.getElementById("epochs-section");
  section.hidden = !e;
  if (!e) return;
  const plots = document.getElementById("epoch-plots");
  const groups = { accuracy: (m) => m.includes("acc"), loss: (m) => m.includes("loss"),
                   "learning rate": (m) => m === "lr" };
  for (const [group, wanted] of Object.entries(groups)) {
    const traces = [];
    for (const s of e.series) {
      for (const [metric, values] of Object.entries(s.metrics)) {
        if (wanted(metric)) traces.push({ x: s.epochs, y: values, mode: "lines+markers",
                                         name: s.name ? `${s.name}: ${metric}` : metric });
      }
    }
    const id = "epochs-" + group.replace(" ", "-");
    let div = document.getElementById(id);
    if (!traces.length) { if (div) div.remove(); continue; }
    if (!div) { div = el("div", null, "plot small"); div.id = id; plots.appendChild(div); }
    Plotly.react(div, traces, { margin: { t: 30, r: 10 }, title: { text: group },
      xaxis: { title: { text: "epoch" }, dtick: 1 }, legend: LEGEND },
      { displaylogo: false, responsive: true });
  }
  const metrics = [...new Set(e.series.flatMap((s) => Object.keys(s.metrics)))];
  const head = el("tr");
  for (const h of ["series", "epoch", ...metrics]) head.appendChild(el("th", h));
  document.querySelector("#epoch-table thead").replaceChildren(head);
  const rows = e.series.flatMap((s) => s.epochs.map((epoch, i) => ({ s, epoch, i })));
  fillRows(document.getElementById("epoch-table"), rows, ({ s, epoch, i }) => [
    [s.name || "-"], [epoch, "num"], ...metrics.map((m) => {
      const v = s.metrics[m] ? s.metrics[m][i] : null;
      return [v === null || v === undefined ? "-" : Number(v.toPrecision(5)), "num"];
    }),
  ]);
  const ranking = document.getElementById("ranking");
  ranking.textContent = e.ranking
    ? "Ranking against the table: " +
      Object.entries(e.ranking).map(([k, v]) => `${k} ${Number(v.toPrecision(4))}`).join(", ")
    : "";
  renderAlpha(e.alpha);
  fillRows(document.getElementById("genotypes"), e.genotypes, (g) => [
    [g.series || "-"], [g.epoch, "num"], [g.candidate, "num"], [g.changed ? "changed" : ""], [g.genotype],
  ]);
}

let alphaData = null;  // the latest α of every epoch; the select picks which is drawn (the latest by default)

function renderAlpha(alpha) {
  document.getElementById("alpha-section").hidden = !alpha;
  alphaData = alpha;
  if (!alpha) return;
  const select = document.getElementById("alpha-epoch");
  const chosen = select.value;
  const latest = String(alpha.epochs[alpha.epochs.length - 1].epoch);
  const follow = !chosen || chosen === select.dataset.latest;  // on the latest epoch: follow new ones
  select.replaceChildren(...alpha.epochs.map((a) => {
    const option = el("option", `epoch ${a.epoch}`);
    option.value = a.epoch;
    return option;
  }));
  select.value = follow ? latest : chosen;
  select.dataset.latest = latest;
  drawAlpha();
}

function drawAlpha() {
  if (!alphaData) return;
  const select = document.getElementById("alpha-epoch");
  const epochs = alphaData.epochs;
  const entry = epochs.find((a) => String(a.epoch) === select.value) || epochs[epochs.length - 1];
  for (const cell of ["normal", "reduce"]) {
    const z = entry[cell];
    const names = alphaData.primitives;
    const x = names && names.length === z[0].length ? names : z[0].map((_, i) => `op ${i}`);
    Plotly.react("alpha-" + cell, [{ type: "heatmap", z, x, y: z.map((_, i) => `edge ${i}`), zmin: 0, zmax: 1,
                                     colorscale: "Blues" }],
      { margin: { t: 30, l: 60, b: 90 }, title: { text: `${cell} cell, epoch ${entry.epoch}` },
        yaxis: { autorange: "reversed" } }, { displaylogo: false, responsive: true });
  }
}

document.getElementById("alpha-epoch")?.addEventListener("change", drawAlpha);

async function refreshRun() {
  const data = await getJSON("api/run?" + query(), { onlyChanged: true });
  if (data === null) return;
  showError(data.error);
  if (data.error) return;
  const r = data.report;
  renderSummary(r.summary);
  document.getElementById("related").textContent =
    r.related.length ? "Related jobs: " + r.related.map((j) => `${j.name} (${j.status})`).join(", ") : "";
  document.getElementById("config").textContent = JSON.stringify(r.config, null, 2);
  renderCurve(r.curve);
  renderFailures(r.failures);
  renderTop(r.top);
  renderFunnel(r.funnel);
  renderPareto(r.pareto);
  renderEpochs(r.epochs);
}

async function poll(refresh) {
  try {
    await refresh();
    stamp();
  } catch (error) {
    showError(`cannot reach the dashboard server: ${error.message}`);
  }
  setTimeout(() => poll(refresh), POLL_MS);
}

poll(body.dataset.page === "runs" ? refreshRuns : refreshRun);
