// saeplug feature dashboard: a static page that works from file:// (no fetch():
// the index and the feature chunks are script files that call saeplugIndex /
// saeplugChunk). Corpus text is only ever inserted with textContent.
"use strict";

var SAEPLUG = { index: null, chunks: {}, pending: {}, shown: 0, view: [], current: null, pos: {} };

function saeplugIndex(data) { SAEPLUG.index = data; }

function saeplugChunk(n, features) {
  SAEPLUG.chunks[n] = features;
  var waiting = SAEPLUG.pending[n] || [];
  delete SAEPLUG.pending[n];
  waiting.forEach(function (cb) { cb(features); });
}

function el(tag, cls, text) {
  var e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function fmt(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5)) return v.toExponential(digits || 3);
  return v.toFixed(digits === undefined ? 3 : digits);
}

function loadChunk(n, cb) {
  if (SAEPLUG.chunks[n]) { cb(SAEPLUG.chunks[n]); return; }
  if (SAEPLUG.pending[n]) { SAEPLUG.pending[n].push(cb); return; }
  SAEPLUG.pending[n] = [cb];
  var s = document.createElement("script");
  s.src = "data/" + SAEPLUG.index.chunk_files[n];
  s.onerror = function () {
    delete SAEPLUG.pending[n];
    showError("could not load " + s.src);
  };
  document.body.appendChild(s);
}

function showError(msg) {
  var f = document.getElementById("feature");
  f.textContent = "";
  f.appendChild(el("p", "never", msg));
}

// ---- feature list -------------------------------------------------------

function rows() {
  // index.features: [id, density, max_act, explanation|null, score|null]
  return SAEPLUG.index.features;
}

function applyView() {
  var q = document.getElementById("search").value.trim().toLowerCase();
  var sort = document.getElementById("sort").value;
  var list = rows().filter(function (r) {
    if (!q) return true;
    if (String(r[0]) === q || ("#" + r[0]) === q) return true;
    return r[3] !== null && r[3].toLowerCase().indexOf(q) >= 0;
  });
  var key = {
    id: function (a, b) { return a[0] - b[0]; },
    density: function (a, b) { return b[1] - a[1] || a[0] - b[0]; },
    max: function (a, b) { return b[2] - a[2] || a[0] - b[0]; },
    score: function (a, b) { return (b[4] === null ? -1 : b[4]) - (a[4] === null ? -1 : a[4]) || a[0] - b[0]; },
    explanation: function (a, b) {
      var x = a[3] || "\uffff", y = b[3] || "\uffff";
      return x < y ? -1 : x > y ? 1 : a[0] - b[0];
    }
  }[sort];
  // An exact id match comes first.
  list.sort(function (a, b) {
    var ea = String(a[0]) === q, eb = String(b[0]) === q;
    if (ea !== eb) return ea ? -1 : 1;
    return key(a, b);
  });
  SAEPLUG.view = list;
  SAEPLUG.shown = 0;
  document.getElementById("feature-list").textContent = "";
  showMore();
}

function showMore() {
  var ol = document.getElementById("feature-list");
  var end = Math.min(SAEPLUG.view.length, SAEPLUG.shown + 200);
  for (var i = SAEPLUG.shown; i < end; i++) {
    var r = SAEPLUG.view[i];
    var li = el("li");
    li.dataset.id = r[0];
    li.appendChild(el("span", "fid", "#" + r[0]));
    li.appendChild(el("span", "fstats", "density " + fmt(r[1], 4) + " · max " + fmt(r[2], 2) +
      (r[4] !== null ? " · score " + fmt(r[4], 2) : "")));
    li.appendChild(el("span", "fexpl", r[3] === null ? "" : r[3]));
    if (SAEPLUG.current === r[0]) li.classList.add("selected");
    li.addEventListener("click", (function (id) { return function () { location.hash = "feature=" + id; }; })(r[0]));
    ol.appendChild(li);
  }
  SAEPLUG.shown = end;
  document.getElementById("count").textContent =
    SAEPLUG.view.length + " of " + rows().length + " features" + (end < SAEPLUG.view.length ? " (showing " + end + ")" : "");
  document.getElementById("more").style.display = end < SAEPLUG.view.length ? "" : "none";
}

// ---- feature page -------------------------------------------------------

function histogram(h, title) {
  var wrap = el("div");
  if (!h || !h.counts || h.counts.length === 0) return wrap;
  var W = 520, H = 110, pad = 18;
  var ns = "http://www.w3.org/2000/svg";
  var svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "hist");
  svg.setAttribute("width", W);
  svg.setAttribute("height", H + pad);
  var max = Math.max.apply(null, h.counts.concat([1]));
  var bw = W / h.counts.length;
  h.counts.forEach(function (c, i) {
    var r = document.createElementNS(ns, "rect");
    var bh = c === 0 ? 0 : Math.max(1, H * c / max);
    r.setAttribute("x", i * bw);
    r.setAttribute("y", H - bh);
    r.setAttribute("width", Math.max(1, bw - 1));
    r.setAttribute("height", bh);
    var lo = h.lo + (h.hi - h.lo) * i / h.counts.length, hi = h.lo + (h.hi - h.lo) * (i + 1) / h.counts.length;
    var t = document.createElementNS(ns, "title");
    t.textContent = fmt(lo) + " – " + fmt(hi) + ": " + c;
    r.appendChild(t);
    svg.appendChild(r);
  });
  [[0, h.lo, "start"], [W, h.hi, "end"]].forEach(function (a) {
    var t = document.createElementNS(ns, "text");
    t.setAttribute("x", a[0]);
    t.setAttribute("y", H + 12);
    t.setAttribute("text-anchor", a[2]);
    t.textContent = fmt(a[1]);
    svg.appendChild(t);
  });
  if (title) wrap.appendChild(el("div", "note", title));
  wrap.appendChild(svg);
  return wrap;
}

function example(ex, max) {
  var d = el("div", "example");
  d.dataset.act = ex.act;
  d.dataset.seq = ex.seq;
  d.dataset.pos = ex.pos;
  d.appendChild(el("span", "exval", fmt(ex.act, 2)));
  ex.tokens.forEach(function (t, i) {
    var a = ex.acts ? ex.acts[i] : (i === ex.center ? ex.act : 0);
    var s = el("span", "tok", t);
    s.dataset.act = a;
    s.title = "activation " + fmt(a, 4);
    if (a > 0) {
      s.classList.add("active");
      var alpha = max > 0 ? Math.min(1, 0.15 + 0.85 * a / max) : 0.5;
      s.style.backgroundColor = "rgba(255, 140, 0, " + alpha.toFixed(3) + ")";
    }
    if (i === ex.center) s.classList.add("center");
    d.appendChild(s);
  });
  return d;
}

function panel(title, cls) {
  var p = el("div", "panel " + (cls || ""));
  p.appendChild(el("h3", null, title));
  return p;
}

function render(f) {
  var root = document.getElementById("feature");
  root.textContent = "";
  root.dataset.id = f.id;
  root.appendChild(el("h2", null, "Feature " + f.id));
  var st = el("div", "stats");
  st.appendChild(el("span", "density", "density " + fmt(f.density, 6)));
  st.appendChild(el("span", "maxact", "max activation " + fmt(f.max_act, 4)));
  st.appendChild(el("span", "fired", "fired on " + f.fired + " of " + f.rows + " tokens"));
  root.appendChild(st);

  var ex = panel("Explanation", "explanation-panel");
  if (f.explanation && f.explanation.text) {
    ex.appendChild(el("div", "explanation", f.explanation.text));
    ex.appendChild(el("div", "note", "detection " + fmt(f.explanation.detection, 3) +
      " · fuzzing " + fmt(f.explanation.fuzzing, 3) + " (balanced accuracy; 0.5 is chance)"));
  } else if (f.explanation && f.explanation.error) {
    ex.appendChild(el("div", "note", "no explanation: " + f.explanation.error));
  } else {
    ex.appendChild(el("div", "note", "no explanation (run saeplug explain)"));
  }
  root.appendChild(ex);

  if (!f.fired) {
    root.appendChild(el("p", "never", "This feature never fired on the " + f.rows + " recorded tokens: " +
      "there are no activating examples and no activation histogram."));
  } else {
    var hp = panel("Activation histogram (non-zero activations, 50 bins)");
    hp.appendChild(histogram(f.hist));
    root.appendChild(hp);
    var tp = panel("Top activating examples", "top-examples");
    f.top.forEach(function (e) { tp.appendChild(example(e, f.max_act)); });
    root.appendChild(tp);
    if (f.quantiles && f.quantiles.length) {
      var qp = panel("Quantile samples (typical activations, by interval)", "quantiles");
      f.quantiles.slice().reverse().forEach(function (q) {
        var qd = el("div", "quantile");
        qd.appendChild(el("h4", null, "interval " + fmt(q.lo, 3) + " – " + fmt(q.hi, 3) +
          " (" + q.examples.length + " samples" + (q.count !== undefined ? " of " + q.count : "") + ")"));
        q.examples.forEach(function (e) { qd.appendChild(example(e, f.max_act)); });
        qp.appendChild(qd);
      });
      root.appendChild(qp);
    }
  }

  var lp = panel("Logit effects (W_dec,i · W_U)", "logits");
  if (f.logits) {
    var cols = el("div", "logit-cols");
    [["Promoted", f.logits.top, "pos"], ["Suppressed", f.logits.bottom, "neg"]].forEach(function (c) {
      var t = el("table", "logits " + c[2]);
      var hr = el("tr");
      hr.appendChild(el("th", null, c[0]));
      hr.appendChild(el("th", null, "logit"));
      t.appendChild(hr);
      c[1].forEach(function (row) {
        var tr = el("tr");
        tr.appendChild(el("td", c[2], JSON.stringify(row[0])));
        tr.appendChild(el("td", null, fmt(row[1], 3)));
        t.appendChild(tr);
      });
      cols.appendChild(t);
    });
    lp.appendChild(cols);
    lp.appendChild(histogram(f.logits.hist, "histogram of W_dec,i · W_U over the vocabulary"));
    if (SAEPLUG.index.logit_note) lp.appendChild(el("div", "note", SAEPLUG.index.logit_note));
  } else {
    lp.appendChild(el("div", "note", "no logit effects recorded (saeplug-llama logits)"));
  }
  root.appendChild(lp);
}

function open(id) {
  var idx = SAEPLUG.index;
  var at = SAEPLUG.pos[id];
  if (at === undefined) {
    showError("feature " + id + " is not in this dashboard (" + idx.n_features + " of the SAE's " + idx.d_sae + " features)");
    return;
  }
  SAEPLUG.current = id;
  Array.prototype.forEach.call(document.querySelectorAll("#feature-list li"), function (li) {
    li.classList.toggle("selected", Number(li.dataset.id) === id);
  });
  var n = Math.floor(at / idx.chunk_size);
  loadChunk(n, function (fs) {
    if (SAEPLUG.current !== id) return;
    render(fs[at - n * idx.chunk_size]);
  });
}

function route() {
  var m = /feature=(\d+)/.exec(location.hash);
  if (m) open(Number(m[1]));
}

function start() {
  var idx = SAEPLUG.index;
  if (!idx) { showError("data/index.js did not load"); return; }
  document.getElementById("meta").textContent = idx.title;
  idx.features.forEach(function (r, i) { SAEPLUG.pos[r[0]] = i; });
  document.getElementById("search").addEventListener("input", applyView);
  document.getElementById("sort").addEventListener("change", applyView);
  document.getElementById("more").addEventListener("click", showMore);
  window.addEventListener("hashchange", route);
  applyView();
  route();
}

document.addEventListener("DOMContentLoaded", start);
