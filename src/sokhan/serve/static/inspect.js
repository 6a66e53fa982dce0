// sokhan's "Inspect" view: where the model looks (attention heatmap) and what it expects next
// (next-token bar chart). It asks the server's own endpoints, POST /inspect/attention and
// POST /inspect/next, with the key from the header like the chat does. Drawn right to left:
// the first token is the rightmost column, and the row labels sit on the right.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const number = new Intl.NumberFormat("fa-IR");
  const weightFormat = new Intl.NumberFormat("fa-IR", { minimumFractionDigits: 4, maximumFractionDigits: 4 });
  const percent = new Intl.NumberFormat("fa-IR",
    { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });
  // white to deep green (ColorBrewer "Greens"), in steps the eye reads as even
  const RAMP = ["#f7fcf5", "#c7e9c0", "#74c476", "#238b45", "#00441b"];

  let info = null;      // /health's "inspect": {family, attention: {layers, heads, max_tokens} | null, next_token}
  let shown = null;     // the attention on screen: {text, tokens, causal, layer, heads: [head][query][key]}

  // --- the tabs -------------------------------------------------------------------------------

  function showView(name) {
    for (const view of ["chat", "inspect"]) {
      $(view + "-view").hidden = view !== name;
      $("tab-" + view).setAttribute("aria-selected", String(view === name));
    }
    document.body.dataset.view = name;  // chat-only controls hide in the inspect view (chat.css)
    // window's history: chat.js's `history` is the conversation
    window.history.replaceState(null, "", name === "inspect" ? "#inspect" : location.pathname);
    (name === "inspect" ? $("inspect-text") : $("input")).focus();
  }

  $("tab-chat").addEventListener("click", () => showView("chat"));
  $("tab-inspect").addEventListener("click", () => showView("inspect"));
  // a link to "#inspect" opens this view
  const followHash = () => { if (location.hash === "#inspect") showView("inspect"); };
  window.addEventListener("hashchange", followHash);
  followHash();

  // --- what this model offers -----------------------------------------------------------------

  serverInfo.then((health) => {  // chat.js's fetch of /health (it reports a failure itself)
    info = health.inspect;
    const attention = info.attention;
    for (const el of document.querySelectorAll("#inspect-view .attention-only")) el.hidden = !attention;
    for (const el of document.querySelectorAll("#inspect-view .next-only")) el.hidden = !info.next_token;
    if (attention) {
      const options = (n, word) => range(n).map((i) => option(i, word + " " + number.format(i + 1)));
      $("inspect-layer").replaceChildren(...options(attention.layers, "لایه"));
      $("inspect-head").append(...options(attention.heads, "سر"));
    }
    const notes = [];
    if (!attention) {
      notes.push(`مدل این سرور از خانواده‌ی ${info.family} است و توجه ندارد؛ فقط توکن بعدی را نشان می‌دهد.`);
    }
    if (!info.next_token) {
      notes.push("مدل این سرور رمزگذار (bert) است و توکن بعدی را پیش‌بینی نمی‌کند؛ فقط نقشه‌ی توجه را نشان می‌دهد.");
    }
    setStatus(notes.join(" "));
  }, () => {});

  function range(n) { return Array.from({ length: n }, (_, i) => i); }

  function option(value, label) {
    const el = document.createElement("option");
    el.value = String(value);
    el.textContent = label;
    return el;
  }

  // --- asking the server ----------------------------------------------------------------------

  async function post(path, body) {
    const headers = { "Content-Type": "application/json" };
    const key = $("api-key").value.trim();
    if (key) headers["Authorization"] = "Bearer " + key;
    const response = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error((data.error && data.error.message) || response.status + " " + response.statusText);
    }
    return data;
  }

  function setStatus(text, error = false) {
    const status = $("inspect-status");
    status.textContent = text;
    status.classList.toggle("error", error);
  }

  async function loadAttention(text) {
    const layer = Number($("inspect-layer").value || 0);
    const data = await post("/inspect/attention", { text, layer });
    shown = { text, tokens: data.tokens, causal: data.causal, layer, heads: data.weights[layer] };
    drawHeatmap();
  }

  async function loadNext(text) {
    const k = Math.min(50, Math.max(1, Math.round(Number($("inspect-k").value) || 10)));
    drawBars((await post("/inspect/next", { text, k })).tokens);
  }

  async function inspect(jobs) {
    const view = $("inspect-view");
    view.dataset.state = "busy";
    $("inspect-run").disabled = true;
    setStatus("در حال محاسبه…");
    const failed = (await Promise.allSettled(jobs)).filter((r) => r.status === "rejected");
    const messages = new Set(failed.map((r) => String(r.reason.message || r.reason)));  // a wrong key fails both
    setStatus([...messages].join(" — "), failed.length > 0);
    $("inspect-run").disabled = false;
    view.dataset.state = failed.length ? "error" : "done";
  }

  $("inspect-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("inspect-text").value;
    if (!text.trim()) return;
    if (!info) return setStatus("سرور در دسترس نیست.", true);
    const jobs = [];
    if (info.attention) jobs.push(loadAttention(text));
    if (info.next_token) jobs.push(loadNext(text));
    inspect(jobs);
  });

  // another layer is another request (the reply carries one layer); another head is on hand
  $("inspect-layer").addEventListener("change", () => { if (shown) inspect([loadAttention(shown.text)]); });
  $("inspect-head").addEventListener("change", () => { if (shown) drawHeatmap(); });

  $("inspect-text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("inspect-form").requestSubmit();
    }
  });

  // --- drawing --------------------------------------------------------------------------------

  // A token as it can be seen: spaces and line breaks as visible marks.
  function visible(token) {
    return token.replace(/ /g, "␣").replace(/\n/g, "↵").replace(/\t/g, "⇥") || "∅";
  }

  function colour(t) {  // t in [0, 1] → a colour on RAMP
    const x = Math.min(1, Math.max(0, t)) * (RAMP.length - 1);
    const i = Math.min(RAMP.length - 2, Math.floor(x));
    const [a, b] = [RAMP[i], RAMP[i + 1]].map((hex) => [1, 3, 5].map((j) => parseInt(hex.slice(j, j + 2), 16)));
    return `rgb(${a.map((v, j) => Math.round(v + (b[j] - v) * (x - i))).join(",")})`;
  }

  function svg(tag, attrs, parent) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (parent) parent.appendChild(el);
    return el;
  }

  function selectedMatrix() {
    const head = $("inspect-head").value;
    if (head !== "mean") return shown.heads[Number(head)];
    const n = shown.heads.length;
    return shown.heads[0].map((row, q) => row.map((_, k) => shown.heads.reduce((s, h) => s + h[q][k], 0) / n));
  }

  function drawHeatmap() {
    const { tokens, causal } = shown;
    const weights = selectedMatrix();
    const T = tokens.length;
    const labels = tokens.map(visible);
    const cell = Math.max(8, Math.min(30, Math.floor(520 / T)));
    const font = Math.max(7, Math.min(14, cell - 4));
    const pad = Math.min(130, 10 + font * 0.75 * Math.max(...labels.map((l) => l.length)));  // room for labels
    const size = T * cell;
    const masked = (q, k) => causal && k > q;
    // the colour scale tops at the largest weight, leaving out a decoder's first row: its one
    // query can only look at itself (weight 1), which would wash every other cell out
    let max = 0;
    weights.forEach((row, q) => row.forEach((w, k) => {
      if (!masked(q, k) && !(causal && q === 0 && T > 1)) max = Math.max(max, w);
    }));
    max = max || 1;

    const root = svg("svg", { id: "heatmap", width: size + pad, height: size + pad, direction: "rtl",
      viewBox: `0 0 ${size + pad} ${size + pad}`, role: "img", "font-size": font,
      "aria-label": `نقشه‌ی توجه لایه‌ی ${number.format(shown.layer + 1)}، ${number.format(T)} توکن`,
    });
    Object.assign(root.dataset, { tokens: T, layer: shown.layer, head: $("inspect-head").value });
    const defs = svg("defs", {}, root);
    const hatch = svg("pattern", { id: "masked-hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse",
      patternTransform: "rotate(45)" }, defs);
    svg("rect", { width: 6, height: 6, fill: "#ecebe6" }, hatch);
    svg("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: "#c9c6bd", "stroke-width": 2 }, hatch);

    // x of key k: the first key is the rightmost column (right to left); y of query q: top down
    const x = (k) => (T - 1 - k) * cell;
    const y = (q) => pad + q * cell;
    const cells = svg("g", { class: "cells" }, root);
    for (let q = 0; q < T; q++) {
      for (let k = 0; k < T; k++) {
        const rect = svg("rect", { x: x(k), y: y(q), width: cell, height: cell, "data-q": q, "data-k": k,
          class: masked(q, k) ? "cell masked" : "cell",
          fill: masked(q, k) ? "url(#masked-hatch)" : colour(weights[q][k] / max) }, cells);
        rect.dataset.weight = String(weights[q][k]);
      }
    }
    // text-anchor "end" in an rtl svg puts a label's left edge at its x: the labels grow away from the grid
    const rows = svg("g", { class: "row-labels", "text-anchor": "end", "dominant-baseline": "central" }, root);
    const cols = svg("g", { class: "col-labels", "text-anchor": "end", "dominant-baseline": "central" }, root);
    labels.forEach((label, i) => {
      svg("text", { x: size + 5, y: y(i) + cell / 2 }, rows).textContent = label;
      const cx = x(i) + cell / 2, cy = pad - 5;
      svg("text", { x: cx, y: cy, transform: `rotate(-90 ${cx} ${cy})` }, cols).textContent = label;
    });
    $("heatmap-box").replaceChildren(root);

    $("legend-max").textContent = weightFormat.format(max);
    document.querySelector("#heat-legend .legend-ramp").style.background =
      `linear-gradient(to left, ${RAMP.join(", ")})`;
    document.querySelector("#heat-legend .legend-masked").hidden = !causal;
    $("heat-legend").hidden = false;
  }

  function drawBars(top) {
    const best = Math.max(...top.map((t) => t.prob)) || 1;
    $("next-bars").replaceChildren(...top.map(({ token, prob }) => {
      const li = document.createElement("li");
      li.className = "bar";
      li.dataset.prob = String(prob);
      const name = document.createElement("span");
      name.className = "bar-token";
      name.textContent = visible(token);
      const track = document.createElement("span");
      track.className = "bar-track";
      const fill = document.createElement("span");
      fill.className = "bar-fill";
      fill.style.inlineSize = (100 * prob / best).toFixed(1) + "%";  // the likeliest fills its track
      track.appendChild(fill);
      const value = document.createElement("span");
      value.className = "bar-value";
      value.textContent = percent.format(prob);
      li.append(name, track, value);
      return li;
    }));
  }

  // --- the tooltip: query, key and weight of the cell under the pointer ---------------------------

  const tip = $("heat-tip");
  $("heatmap-box").addEventListener("mousemove", (e) => {
    const target = e.target;
    if (!shown || !(target instanceof SVGRectElement) || !target.classList.contains("cell")) {
      tip.hidden = true;
      return;
    }
    const q = Number(target.dataset.q), k = Number(target.dataset.k);
    const line = (label, i) => `${label}: «${visible(shown.tokens[i])}» (${number.format(i + 1)})`;
    const weight = target.classList.contains("masked") ? "پوشیده: کلید در آینده‌ی پرسش است"
      : "وزن: " + weightFormat.format(Number(target.dataset.weight));
    tip.textContent = [line("پرسش", q), line("کلید", k), weight].join("\n");
    tip.hidden = false;
    // beside the pointer, kept inside the window
    tip.style.left = Math.max(4, Math.min(e.clientX + 14, window.innerWidth - tip.offsetWidth - 4)) + "px";
    tip.style.top = Math.max(4, Math.min(e.clientY + 14, window.innerHeight - tip.offsetHeight - 4)) + "px";
  });
  $("heatmap-box").addEventListener("mouseleave", () => { tip.hidden = true; });
})();
