"""The inspect-cells page's stylesheet and script, inlined by cells_html.py (no file is fetched by the page).

The script reads the JSON in <script id="cells-data"> (see cells_html.page_data), builds one <span> per
character in #text and colours them by the selected unit. `window.cellsPage` offers select(quantity, unit),
current() and ready, for scripted checks; #QUANTITY:UNIT in the address selects a unit on opening.
"""

CSS = r"""
:root { --fg: #1d1d1f; --muted: #6b6b70; --line: #d8d8dc; --panel: #f6f6f8; --accent: #2b59c3; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); }
header { padding: 10px 16px 6px; border-bottom: 1px solid var(--line); }
header h1 { font-size: 17px; margin: 0 0 2px; }
header .sub, .note { color: var(--muted); font-size: 12.5px; }
.note { margin: 2px 0; }
.controls { position: sticky; top: 0; z-index: 5; display: flex; flex-wrap: wrap; gap: 10px; align-items: center;
  padding: 8px 16px; background: #fff; border-bottom: 1px solid var(--line); }
.controls label { font-size: 12.5px; color: var(--muted); }
.controls select, .controls input, .controls button { font: inherit; font-size: 13px; }
.controls input[type=number] { width: 5.5em; }
#current { font-family: ui-monospace, Menlo, Consolas, monospace; font-weight: 600; }
#legend { display: flex; align-items: center; gap: 6px; font-size: 12px; color: var(--muted); }
#legend .bar { width: 160px; height: 12px; border: 1px solid var(--line); }
main { display: flex; align-items: flex-start; gap: 0; }
#text { flex: 1; min-width: 0; margin: 0; padding: 12px 16px; white-space: pre-wrap; overflow-wrap: anywhere;
  font: 13px/1.55 ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace; }
#text span { cursor: default; }
#text span.nl { color: #b0b0b8; }
#text span.none { outline: 1px dotted #ccc; }
#text span.hover { outline: 2px solid #111; }
aside { width: 380px; flex: none; padding: 10px 14px; border-left: 1px solid var(--line); background: var(--panel);
  position: sticky; top: 48px; max-height: calc(100vh - 48px); overflow-y: auto; }
aside h2 { font-size: 14px; margin: 10px 0 4px; }
aside details { margin: 4px 0; }
aside summary { cursor: pointer; font-weight: 600; font-size: 13px; }
aside summary .help { font-weight: 400; color: var(--muted); }
aside ol { margin: 2px 0 6px; padding-left: 26px; font-size: 12.5px; }
aside li a { font-family: ui-monospace, Menlo, Consolas, monospace; color: var(--accent); cursor: pointer;
  text-decoration: none; }
aside li a:hover { text-decoration: underline; }
aside li.on a { font-weight: 700; }
aside .r { display: inline-block; min-width: 5.5em; margin-left: .6em; font-variant-numeric: tabular-nums; }
.empty { color: var(--muted); font-size: 12.5px; }
.sat { margin: 6px 0 10px; }
.sat svg { background: #fff; border: 1px solid var(--line); }
.sat circle { cursor: pointer; }
.sat circle.on { stroke: #000; stroke-width: 2; }
.keys { font-size: 12px; color: var(--muted); }
.keys i { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin: 0 3px 0 8px; }
#tip { position: fixed; z-index: 10; display: none; pointer-events: none; background: #fff; border: 1px solid #999;
  border-radius: 4px; box-shadow: 0 2px 8px rgba(0, 0, 0, .18); padding: 6px 8px; font-size: 12.5px; min-width: 200px; }
#tip table { border-collapse: collapse; margin-top: 4px; }
#tip td { padding: 0 4px; font-variant-numeric: tabular-nums; }
#tip td.c { font-family: ui-monospace, Menlo, Consolas, monospace; }
#tip tr.true td { font-weight: 700; }
#tip .pb { display: inline-block; height: 8px; background: var(--accent); vertical-align: middle; }
#tip .head { font-family: ui-monospace, Menlo, Consolas, monospace; }
"""

JS = r"""
(function () {
"use strict";
var D = JSON.parse(document.getElementById("cells-data").textContent);
var M = D.meta, T = M.T, text = D.text;
var GATE_COLOURS = { input: "#1f77b4", forget: "#2ca02c", cell: "#9467bd", output: "#d62728", reset: "#ff7f0e",
  update: "#17becf", candidate: "#8c564b", h: "#7f7f7f" };

function bytes(b64) {
  var s = atob(b64), a = new Uint8Array(s.length);
  for (var i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
  return a;
}
function el(tag, attrs, children) {
  var e = document.createElement(tag);
  for (var k in attrs || {}) {
    if (k === "text") e.textContent = attrs[k];
    else if (k === "cls") e.className = attrs[k];
    else e.setAttribute(k, attrs[k]);
  }
  (children || []).forEach(function (c) { e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
  return e;
}
function shown(ch) {
  if (ch === "\n") return "\u23ce";
  if (ch === " ") return "\u2423";
  if (ch === "\t") return "\u21e5";
  if (ch === "\r") return "\u240d";
  return ch;
}
function fmt(v, digits) { return isFinite(v) ? v.toFixed(digits === undefined ? 3 : digits) : "-"; }

// --- data ------------------------------------------------------------------------------------------
var read = D.read ? bytes(D.read) : null;
var blocks = {}, order = [];
D.quantities.forEach(function (q) { blocks[q.name] = q; order.push(q.name); });
var extras = {};
D.extras.forEach(function (x) { extras[x.quantity + ":" + x.unit] = x; });
var decoded = {};
function values(q, u) {  // Int8Array (T,) of unit u of quantity q, or null when the page does not hold it
  var key = q + ":" + u;
  if (blocks[q]) {
    if (!decoded[q]) decoded[q] = new Int8Array(bytes(blocks[q].data).buffer);
    return decoded[q].subarray(u * T, (u + 1) * T);
  }
  if (extras[key]) {
    if (!decoded[key]) decoded[key] = new Int8Array(bytes(extras[key].data).buffer);
    return decoded[key];
  }
  return null;
}
function rangeOf(q, u) {
  var b = blocks[q] || extras[q + ":" + u];
  var s = blocks[q] ? b.scale[u] : b.scale[0];
  return { mid: b.mid, scale: s, kind: b.kind };
}
var lm = null, cls = null;
if (D.lm) {
  lm = { k: D.lm.k, symbols: D.lm.symbols, top: new Uint16Array(bytes(D.lm.top).buffer),
    probs: new Uint16Array(bytes(D.lm.probs).buffer), surprisal: new Float32Array(bytes(D.lm.surprisal).buffer) };
}
if (D.classify) cls = { classes: D.classify.classes, probs: new Uint16Array(bytes(D.classify.probs).buffer) };
var P_MAX = 65534;

// --- colours -----------------------------------------------------------------------------------------
function mix(a, b, t) { return Math.round(a + (b - a) * t); }
var NEG = [49, 104, 176], POS = [203, 44, 44], WHITE = [255, 255, 255];
var diverging = [], sequential = [];
for (var i = 0; i <= 254; i++) {
  var t = (i - 127) / 127, end = t < 0 ? NEG : POS, a = Math.pow(Math.abs(t), 0.8);
  diverging.push("rgb(" + mix(255, end[0], a) + "," + mix(255, end[1], a) + "," + mix(255, end[2], a) + ")");
}
for (i = 0; i <= 254; i++) {
  var s = Math.pow(i / 254, 0.8);
  sequential.push("rgb(" + mix(255, 230, s) + "," + mix(255, 85, s) + "," + mix(255, 13, s) + ")");
}

// --- header, controls, text --------------------------------------------------------------------------
var what = M.task === "lm" ? "language model, data.mode " + M.mode : "text classifier (" + cls.classes.join(", ") + ")";
var header = el("header", {}, [
  el("h1", { text: "inspect-cells: " + M.run }),
  el("div", { cls: "sub", text: M.cell.toUpperCase() + ", " + M.num_layers + " layer(s) of " + M.hidden_size +
    (M.bidirectional ? " units per direction" : " units") + "; " + what + "; " + T + " characters. " +
    "Hover a character for the model's view; choose a unit to colour the text by it." })]);
M.notes.forEach(function (n) { header.appendChild(el("div", { cls: "note", text: n })); });
if (M.dropped.length) {
  header.appendChild(el("div", { cls: "note", text: "Not in this page (size limit, --max-mb): every unit of " +
    M.dropped.join(", ") + "; their ranked units are kept." }));
}
document.body.appendChild(header);

var select = el("select", { id: "quantity" });
var groupUnits = el("optgroup", { label: "every unit of" });
order.forEach(function (q) { groupUnits.appendChild(el("option", { value: "q:" + q, text: q })); });
select.appendChild(groupUnits);
if (D.extras.length) {
  var groupExtra = el("optgroup", { label: "ranked units kept alone" });
  D.extras.forEach(function (x) {
    var value = "x:" + x.quantity + ":" + x.unit;
    groupExtra.appendChild(el("option", { value: value, text: x.quantity + "[" + x.unit + "]" }));
  });
  select.appendChild(groupExtra);
}
var groupChar = el("optgroup", { label: "per character" });
if (lm) groupChar.appendChild(el("option", { value: "s:surprisal", text: "surprisal (bits)" }));
if (cls) {
  cls.classes.forEach(function (c, k) {
    groupChar.appendChild(el("option", { value: "p:" + k, text: "p(" + c + ")" }));
  });
}
if (groupChar.children.length) select.appendChild(groupChar);
var unitInput = el("input", { id: "unit", type: "number", min: "0", max: String(M.hidden_size - 1), value: "0" });
var prev = el("button", { text: "\u25c0", title: "previous unit" });
var next = el("button", { text: "\u25b6", title: "next unit" });
var current = el("span", { id: "current" });
var legend = el("span", { id: "legend" });
var controls = el("div", { cls: "controls" }, [el("label", { text: "colour by" }), select,
  el("label", { text: "unit" }), unitInput, prev, next, current, legend]);
document.body.appendChild(controls);

var pre = el("pre", { id: "text" });
var spans = new Array(T), frag = document.createDocumentFragment();
for (i = 0; i < T; i++) {
  var ch = text[i], sp = document.createElement("span");
  sp.i = i;
  if (ch === "\n") {  // a visible mark that takes the newline's colour, then the line break itself
    sp.textContent = "\u23ce"; sp.className = "nl";
    frag.appendChild(sp); frag.appendChild(document.createTextNode("\n"));
  } else {
    sp.textContent = ch === "\r" ? "\u240d" : ch; frag.appendChild(sp);
  }
  spans[i] = sp;
}
pre.appendChild(frag);
var aside = el("aside", {});
document.body.appendChild(el("main", {}, [pre, aside]));
var tip = el("div", { id: "tip" });
document.body.appendChild(tip);

// --- line and column of every position, for the tooltip ---------------------------------------------
var lineOf = new Int32Array(T), colOf = new Int32Array(T);
for (var p = 0, line = 1, col = 1; p < T; p++) {
  lineOf[p] = line; colOf[p] = col;
  if (text[p] === "\n") { line++; col = 1; } else col++;
}

// --- selection and painting ------------------------------------------------------------------------
var state = { kind: "q", q: order.length ? order[0] : (D.extras.length ? D.extras[0].quantity : null), u: 0 };
function paint() {
  var i;
  if (state.kind === "s") {
    for (i = 0; i < T; i++) {
      var b = i > 0 ? lm.surprisal[i - 1] : NaN;
      spans[i].style.backgroundColor = isFinite(b) ? sequential[Math.min(254, Math.round(b / 8 * 254))] : "";
    }
    legendBar(sequential, "0 bits", "\u2265 8 bits");
  } else if (state.kind === "p") {
    var C = cls.classes.length;
    for (i = 0; i < T; i++) {
      var v = cls.probs[i * C + state.k];
      spans[i].style.backgroundColor = v === 65535 ? "" : sequential[Math.round(v / P_MAX * 254)];
    }
    legendBar(sequential, "p = 0", "p = 1");
  } else {
    var vals = values(state.q, state.u), r = rangeOf(state.q, state.u);
    for (i = 0; i < T; i++) {
      var x = vals[i];
      spans[i].style.backgroundColor = x === -128 ? "" : diverging[x + 127];
      spans[i].classList.toggle("none", x === -128);
    }
    legendBar(diverging, fmt(r.mid - r.scale), fmt(r.mid + r.scale));
  }
  current.textContent = label();
  if (hovered && tip.style.display === "block") tipFor(hovered.i);
  var unit = state.kind === "q" || state.kind === "x";
  document.querySelectorAll("aside li, .sat circle").forEach(function (e) {
    e.classList.toggle("on", unit && e.dataset.q === state.q && +e.dataset.u === state.u);
  });
}
function label() {
  if (state.kind === "s") return "surprisal of each character";
  if (state.kind === "p") return "p(" + cls.classes[state.k] + ") after each character";
  return state.q + "[" + state.u + "]";
}
function legendBar(palette, lo, hi) {
  legend.textContent = "";
  var bar = el("span", { cls: "bar" });
  var stops = [];
  for (var i = 0; i <= 254; i += 32) stops.push(palette[i]);
  stops.push(palette[254]);
  bar.style.background = "linear-gradient(to right," + stops.join(",") + ")";
  legend.appendChild(el("span", { text: lo }));
  legend.appendChild(bar);
  legend.appendChild(el("span", { text: hi }));
}
function selectUnit(q, u) {
  u = +u;
  if (blocks[q] && u >= 0 && u < M.hidden_size) {
    state = { kind: "q", q: q, u: u };
    select.value = "q:" + q; unitInput.value = String(u);
    unitInput.disabled = prev.disabled = next.disabled = false;
  } else if (extras[q + ":" + u]) {
    state = { kind: "x", q: q, u: u };
    select.value = "x:" + q + ":" + u; unitInput.value = String(u);
    unitInput.disabled = prev.disabled = next.disabled = true;
  } else return false;
  try { history.replaceState(null, "", "#" + q + ":" + u); } catch (e) { /* file pages may refuse */ }
  paint();
  return true;
}
select.addEventListener("change", function () {
  var v = select.value, kind = v.slice(0, 1), rest = v.slice(2);
  if (kind === "q") selectUnit(rest, Math.min(+unitInput.value || 0, M.hidden_size - 1));
  else if (kind === "x") { var at = rest.lastIndexOf(":"); selectUnit(rest.slice(0, at), +rest.slice(at + 1)); }
  else if (kind === "s") { state = { kind: "s" }; unitInput.disabled = prev.disabled = next.disabled = true; paint(); }
  else { state = { kind: "p", k: +rest }; unitInput.disabled = prev.disabled = next.disabled = true; paint(); }
});
unitInput.addEventListener("change", function () {
  if (state.kind === "q") selectUnit(state.q, +unitInput.value);
});
prev.addEventListener("click", function () {
  if (state.kind === "q" && state.u > 0) selectUnit(state.q, state.u - 1);
});
next.addEventListener("click", function () {
  if (state.kind === "q" && state.u < M.hidden_size - 1) selectUnit(state.q, state.u + 1);
});

// --- tooltip -----------------------------------------------------------------------------------------
var hovered = null;
function probabilityRow(name, p, strong) {
  var bar = el("span", { cls: "pb", style: "width:" + Math.round(p * 90) + "px" });
  return el("tr", { cls: strong ? "true" : "" }, [el("td", { cls: "c", text: name }), el("td", {}, [bar]),
    el("td", { text: fmt(p) })]);
}
function tipFor(i) {
  var ch = text[i], parts = [];
  var where = "  position " + i + ", line " + lineOf[i] + ", column " + colOf[i];
  parts.push(el("div", { cls: "head", text: JSON.stringify(ch) + where }));
  if (state.kind === "q" || state.kind === "x") {
    var x = values(state.q, state.u)[i], r = rangeOf(state.q, state.u);
    var open = r.kind !== "tanh" && r.kind !== "sigmoid";  // a value at the end of the scale may lie beyond it
    var clipped = open && x === 127 ? "\u2265 " : open && x === -127 ? "\u2264 " : "";
    var value = x === -128 ? "no state (not read)" : clipped + fmt(r.mid + x / 127 * r.scale);
    parts.push(el("div", { text: label() + " = " + value }));
  }
  if (lm) {
    if (i > 0 && isFinite(lm.surprisal[i - 1])) {
      parts.push(el("div", { text: "this character: " + fmt(lm.surprisal[i - 1], 2) + " bits" }));
    }
    var rows = [], truth = i + 1 < T ? text[i + 1] : null;
    var truthShown = truth === null ? null : (M.mode !== "stream" && truth === "\n" ? "\n" : truth);
    for (var k = 0; k < lm.k; k++) {
      var id = lm.top[i * lm.k + k], pr = lm.probs[i * lm.k + k] / P_MAX, sym = lm.symbols[id];
      rows.push(probabilityRow(shown(sym), pr, sym === truthShown));
    }
    parts.push(el("div", { text: "next character, top " + lm.k + ":" }));
    parts.push(el("table", {}, rows));
    if (truth !== null) {
      var bits = lm.surprisal[i];
      parts.push(el("div", { text: "true next " + JSON.stringify(truth) + ": p = " + fmt(Math.pow(2, -bits)) +
        ", surprisal " + fmt(bits, 2) + " bits" }));
    }
  }
  if (cls) {
    var C = cls.classes.length, crow = [];
    if (cls.probs[i * C] === 65535) parts.push(el("div", { text: "no class probabilities here" }));
    else {
      for (var c = 0; c < C; c++) {
        var pc = cls.probs[i * C + c] / P_MAX;
        crow.push(probabilityRow(cls.classes[c], pc, false));
      }
      parts.push(el("div", { text: "class probabilities of the line read so far:" }));
      parts.push(el("table", {}, crow));
    }
  }
  tip.textContent = "";
  parts.forEach(function (e) { tip.appendChild(e); });
}
pre.addEventListener("mouseover", function (ev) {
  var sp = ev.target;
  if (sp.i === undefined) return;
  if (hovered) hovered.classList.remove("hover");
  hovered = sp; sp.classList.add("hover");
  tipFor(sp.i);
  tip.style.display = "block";
});
pre.addEventListener("mousemove", function (ev) {
  var w = tip.offsetWidth, h = tip.offsetHeight;
  var x = ev.clientX + 14, y = ev.clientY + 16;
  if (x + w > window.innerWidth) x = Math.max(0, ev.clientX - w - 10);
  if (y + h > window.innerHeight) y = Math.max(0, ev.clientY - h - 12);
  tip.style.left = x + "px"; tip.style.top = y + "px";
});
pre.addEventListener("mouseleave", function () {
  tip.style.display = "none";
  if (hovered) hovered.classList.remove("hover");
});

// --- ranking -------------------------------------------------------------------------------------------
aside.appendChild(el("h2", { text: "Units that follow a property of the text" }));
aside.appendChild(el("div", { cls: "empty",
  text: "Pearson r over the characters read; click a unit to colour the text." }));
Object.keys(D.ranking).forEach(function (name) {
  var units = D.ranking[name];
  var list = el("ol", {});
  units.forEach(function (u) {
    var a = el("a", { text: u[0] + "[" + u[1] + "]" });
    a.addEventListener("click", function () { selectUnit(u[0], u[1]); });
    var li = el("li", {}, [a, el("span", { cls: "r", text: "r = " + (u[2] >= 0 ? "+" : "") + u[2].toFixed(3) })]);
    li.dataset.q = u[0]; li.dataset.u = String(u[1]);
    list.appendChild(li);
  });
  var body = units.length ? list : el("div", { cls: "empty", text: "constant over this text: nothing to rank" });
  aside.appendChild(el("details", units.length ? { open: "" } : {}, [
    el("summary", {}, [name + " ", el("span", { cls: "help", text: "\u2014 " + D.help[name] })]), body]));
});

// --- saturation ------------------------------------------------------------------------------------------
if (D.saturation.length) {
  aside.appendChild(el("h2", { text: "Gate saturation" }));
  aside.appendChild(el("div", { cls: "empty", text: "One dot per unit: fraction of the characters where the gate " +
    "is left-saturated (< " + M.saturation[0] + ") and right-saturated (> " + M.saturation[1] + "); tanh values " +
    "on (a + 1) / 2. Click a dot." }));
  var groups = {};
  D.saturation.forEach(function (s) {
    var parts = s.quantity.split("."), key = parts[0] + (parts.length > 2 ? "." + parts[2] : "");
    (groups[key] = groups[key] || []).push(s);
  });
  var NS = "http://www.w3.org/2000/svg", W = 300, H = 230, L = 40, B = 34;
  Object.keys(groups).forEach(function (key) {
    var svg = document.createElementNS(NS, "svg");
    svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    function sx(v) { return L + v * (W - L - 10); }
    function sy(v) { return H - B - v * (H - B - 10); }
    function line(x1, y1, x2, y2, colour, dash) {
      var l = document.createElementNS(NS, "line");
      l.setAttribute("x1", x1); l.setAttribute("y1", y1); l.setAttribute("x2", x2); l.setAttribute("y2", y2);
      l.setAttribute("stroke", colour); if (dash) l.setAttribute("stroke-dasharray", dash);
      svg.appendChild(l);
    }
    function txt(x, y, s, anchor, rotate) {
      var t = document.createElementNS(NS, "text");
      t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("font-size", "11"); t.setAttribute("fill", "#555");
      t.setAttribute("text-anchor", anchor || "middle");
      if (rotate) t.setAttribute("transform", "rotate(-90 " + x + " " + y + ")");
      t.textContent = s; svg.appendChild(t);
    }
    line(sx(0), sy(0), sx(1), sy(0), "#999"); line(sx(0), sy(0), sx(0), sy(1), "#999");
    line(sx(0), sy(1), sx(1), sy(0), "#ccc", "4 3");
    [0, 0.5, 1].forEach(function (v) {
      txt(sx(v), sy(0) + 13, String(v));
      txt(sx(0) - 5, sy(v) + 4, String(v), "end");
    });
    txt((sx(0) + sx(1)) / 2, H - 6, "fraction left-saturated");
    txt(12, (sy(0) + sy(1)) / 2, "fraction right-saturated", "middle", true);
    var keys = el("div", { cls: "keys" });
    groups[key].forEach(function (s) {
      var gate = s.quantity.split(".")[1], colour = GATE_COLOURS[gate] || "#333";
      for (var u = 0; u < s.left.length; u++) {
        var c = document.createElementNS(NS, "circle");
        c.setAttribute("cx", sx(s.left[u])); c.setAttribute("cy", sy(s.right[u])); c.setAttribute("r", 3.2);
        c.setAttribute("fill", colour); c.setAttribute("fill-opacity", "0.65");
        c.dataset.q = s.quantity; c.dataset.u = String(u);
        var title = document.createElementNS(NS, "title");
        title.textContent = s.quantity + "[" + u + "]: left " + s.left[u].toFixed(3) +
          ", right " + s.right[u].toFixed(3);
        c.appendChild(title);
        c.addEventListener("click", selectUnit.bind(null, s.quantity, u));
        svg.appendChild(c);
      }
      keys.appendChild(el("i", { style: "background:" + colour }));
      keys.appendChild(document.createTextNode(gate));
    });
    aside.appendChild(el("div", { cls: "sat" }, [el("div", { cls: "empty", text: key }), svg, keys]));
  });
}

// --- start ------------------------------------------------------------------------------------------------
var first = null;
Object.keys(D.ranking).some(function (name) {
  first = D.ranking[name].length ? D.ranking[name][0] : null;
  return first !== null;
});
var hash = decodeURIComponent(location.hash.slice(1)), at = hash.lastIndexOf(":");
if (!(at > 0 && selectUnit(hash.slice(0, at), +hash.slice(at + 1)))) {
  if (!(first && selectUnit(first[0], first[1]))) {
    if (state.q) selectUnit(state.q, state.kind === "q" ? 0 : D.extras[0].unit);
    else if (lm) { select.value = "s:surprisal"; select.dispatchEvent(new Event("change")); }
  }
}
window.cellsPage = { select: selectUnit, current: function () { return label(); }, ready: true };
})();
"""
