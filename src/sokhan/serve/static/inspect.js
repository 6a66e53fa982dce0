// sokhan's "Inspect" view: where the model looks (attention heatmap) and what it expects next
// (next-token bars). It asks the server's own endpoints, POST /inspect/attention and
// POST /inspect/next, with the key from the header like the chat does, and draws with
// SokhanView (/static/view.js, the renderer of `sokhan inspect`'s offline pages too). Drawn right
// to left: the first token is the rightmost column, and the row labels sit on the right.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const number = new Intl.NumberFormat("fa-IR");
  const weightFormat = new Intl.NumberFormat("fa-IR", { minimumFractionDigits: 4, maximumFractionDigits: 4 });
  // white to deep green (ColorBrewer "Greens"), in steps the eye reads as even
  const RAMP = [[247, 252, 245], [199, 233, 192], [116, 196, 118], [35, 139, 69], [0, 68, 27]];

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

  const tip = $("heat-tip");

  // A token as it can be seen: spaces and line breaks as visible marks.
  function visible(token) {
    return token.replace(/ /g, "␣").replace(/\n/g, "↵").replace(/\t/g, "⇥") || "∅";
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
    const masked = (q, k) => causal && k > q;
    // the colour scale tops at the largest weight, leaving out a decoder's first row: its one
    // query can only look at itself (weight 1), which would wash every other cell out
    let max = 0;
    weights.forEach((row, q) => row.forEach((w, k) => {
      if (!masked(q, k) && !(causal && q === 0 && T > 1)) max = Math.max(max, w);
    }));
    max = max || 1;

    const root = SokhanView.heatmap({
      values: weights, rows: labels, cols: labels, row_name: "پرسش", col_name: "کلید", value_name: "وزن",
      stops: RAMP, vmin: 0, vmax: max, colorbar: false,  // #heat-legend is the colour key
      mask: causal ? weights.map((row, q) => row.map((_, k) => masked(q, k))) : null,
      mask_label: "پوشیده: کلید در آینده‌ی پرسش است",
    }, { rtl: true, tip, format: (v) => weightFormat.format(v) });
    root.id = "heatmap";
    root.setAttribute("role", "img");
    root.setAttribute("aria-label", `نقشه‌ی توجه لایه‌ی ${number.format(shown.layer + 1)}، ${number.format(T)} توکن`);
    Object.assign(root.dataset, { tokens: T, layer: shown.layer, head: $("inspect-head").value });
    $("heatmap-box").replaceChildren(root);

    $("legend-max").textContent = weightFormat.format(max);
    document.querySelector("#heat-legend .legend-ramp").style.background =
      `linear-gradient(to left, ${RAMP.map((c) => `rgb(${c})`).join(", ")})`;
    $("heat-legend").hidden = false;
  }

  function drawBars(top) {
    const list = SokhanView.bars({
      labels: top.map((t) => visible(t.token)), values: top.map((t) => t.prob),
      label_name: "توکن", value_name: "احتمال", percent: true,
    }, { locale: "fa-IR", tip });
    list.id = "next-bars";
    $("next-bars").replaceWith(list);
  }
})();
