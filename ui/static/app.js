// The live topology: a snapshot of every service over server-sent events, then each
// service again when it, its EndpointSlices or its pods change. No library, no build.
"use strict";
const services = new Map();   // "ns/name" → view
const rows = new Map();       // "ns/name" → row element
const groups = new Map();     // namespace → <details>
const tree = document.getElementById("tree");
const search = document.getElementById("search");
let selected = null;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}

function matches(v, q) {
  if (!q) return true;
  const hay = [v.k, v.ip || "", v.dns, ...(v.e || []).map(e => e.a + " " + (e.pod || ""))].join(" ").toLowerCase();
  return hay.includes(q);
}

function group(ns) {
  let g = groups.get(ns);
  if (!g) {
    g = el("details", {class: "ns", "data-ns": ns}, el("summary"));
    g.open = true;
    groups.set(ns, g);
    const after = [...groups.keys()].sort().find(n => n > ns);
    tree.insertBefore(g, after ? groups.get(after) : null);
  }
  return g;
}

function endpointsTable(v) {
  const t = el("table", {class: "eps mono"});
  for (const e of v.e || []) {
    const cond = [e.r ? "ready" : "", e.s ? "serving" : "", e.t ? "terminating" : ""].filter(Boolean).join(",") || "not ready";
    const pod = e.pod ? `${e.pod} (${e.pr ? "ready" : "not ready"}${e.rs ? ", " + e.rs + " restarts" : ""})` : "";
    t.append(el("tr", {"data-pod": e.pod || ""},
      el("td", {}, e.a), el("td", {class: e.r ? "ok" : e.t ? "warn" : "bad"}, cond),
      el("td", {}, pod), el("td", {class: "muted"}, e.sl)));
  }
  return t;
}

function render(v) {
  const eps = v.e || [];
  const ready = eps.filter(e => e.r).length;
  const cls = v.t === "ExternalName" ? "muted" : v.ip === "None" ? (ready ? "ok" : "bad") : eps.length === 0 ? "bad" : ready ? "ok" : "bad";
  const row = el("div", {class: "svc" + (selected === v.k ? " sel" : ""), "data-svc": v.k},
    el("div", {class: "head"},
      el("span", {class: "name"}, v.n),
      el("span", {class: "muted"}, v.t),
      el("span", {class: "mono"}, v.ip || ""),
      el("span", {class: "mono"}, (v.p || []).join(", ")),
      el("span", {class: cls + " ready"}, v.t === "ExternalName" ? "alias" : `${ready}/${eps.length} ready`),
      el("span", {class: "mono muted"}, v.dns)));
  if (selected === v.k) row.append(endpointsTable(v));
  row.hidden = !matches(v, search.value.trim().toLowerCase());
  row.addEventListener("click", () => select(v.k));
  return row;
}

function put(v) {
  const old = rows.get(v.k);
  if (v.gone) {
    services.delete(v.k);
    if (old) old.remove();
    rows.delete(v.k);
  } else {
    services.set(v.k, v);
    const row = render(v);
    if (old) old.replaceWith(row);
    else {
      const g = group(v.ns);
      const after = [...g.querySelectorAll(".svc")].find(r => r.dataset.svc > v.k);
      g.insertBefore(row, after || null);
    }
    rows.set(v.k, row);
  }
}

function counts() {
  for (const [ns, g] of groups) {
    const n = g.querySelectorAll(".svc").length;
    if (n === 0) { g.remove(); groups.delete(ns); continue; }
    g.firstChild.textContent = `${ns} (${n} service${n === 1 ? "" : "s"})`;
  }
  let eps = 0;
  for (const v of services.values()) eps += (v.e || []).length;
  document.getElementById("count").textContent = `${services.size} services, ${eps} endpoints`;
}

async function select(key) {
  selected = key;
  for (const [k, r] of rows) if (k === key || r.classList.contains("sel")) put(services.get(k));
  const v = services.get(key);
  const aside = document.getElementById("path");
  aside.hidden = false;
  document.getElementById("path-title").textContent = `explain svc/${v.n} -n ${v.ns}`;
  const text = document.getElementById("path-text");
  text.textContent = "…";
  const q = new URLSearchParams({target: "svc/" + v.n, namespace: v.ns, format: "text"});
  const resp = await fetch("/explain?" + q);
  text.textContent = await resp.text();
}

search.addEventListener("input", () => {
  const q = search.value.trim().toLowerCase();
  for (const [k, r] of rows) r.hidden = !matches(services.get(k), q);
});

function connect() {
  performance.mark("events-opened");
  const status = document.getElementById("status");
  const es = new EventSource("events");
  es.addEventListener("snapshot", ev => {
    // Every service, sorted by namespace and name: the tree is built afresh, in order.
    performance.mark("snapshot-received");
    status.textContent = "live"; status.className = "up";
    services.clear(); rows.clear(); groups.clear();
    const frag = document.createDocumentFragment();
    let g = null;
    for (const v of JSON.parse(ev.data)) {
      if (!g || g.dataset.ns !== v.ns) {
        g = el("details", {class: "ns", "data-ns": v.ns}, el("summary"));
        g.open = true;
        groups.set(v.ns, g);
        frag.append(g);
      }
      services.set(v.k, v);
      const row = render(v);
      rows.set(v.k, row);
      g.append(row);
    }
    tree.replaceChildren(frag);
    counts();
    performance.mark("snapshot-shown");
  });
  es.addEventListener("update", ev => {
    for (const v of JSON.parse(ev.data)) put(v);
    counts();
  });
  es.onerror = () => { status.textContent = "reconnecting…"; status.className = "down"; };
}
connect();
