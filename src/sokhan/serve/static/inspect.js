// sokhan's "Inspect" view: where the model looks (attention heatmap) and what it expects next
// (next-token bars). It asks the server's own endpoints, POST /inspect/attention and
// POST /inspect/next, with the key from the header like the chat does, and draws with
// SokhanView (/static/view.js, the renderer of `sokhan inspect`'s offline pages too). Drawn right
// to left: the first token is the rightmost column, and the row labels sit on the right. For a
// translation model it shows one kind of attention at a time (cross: Persian rows over English
// columns, encoder: English over English, decoder: Persian over Persian); English columns run
// left to right. This file also switches the page's views (the tabs).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const number = new Intl.NumberFormat("fa-IR");
  const weightFormat = new Intl.NumberFormat("fa-IR", { minimumFractionDigits: 4, maximumFractionDigits: 4 });
  // white to deep green (ColorBrewer "Greens"), in steps the eye reads as even
  const RAMP = [[247, 252, 245], [199, 233, 192], [116, 196, 118], [35, 139, 69], [0, 68, 27]];

  let info = null;      // /health's "inspect": {family, attention: {layers, heads, max_tokens, kinds?} | null, next_token}
  let translator = false;  // a translation model: attention.kinds lists its three kinds
  // the attention on screen: {text, rows, cols, causal, layer, kind, heads: [head][row][column]}
  let shown = null;

  // --- the tabs -------------------------------------------------------------------------------

  const VIEWS = ["chat", "translate", "inspect"];
  let offered = ["chat", "inspect"];  // until /health says: a translator's page translates instead of chatting

  function showView(name) {
    if (!offered.includes(name)) name = offered[0];
    for (const view of VIEWS) {
      $(view + "-view").hidden = view !== name;
      $("tab-" + view).setAttribute("aria-selected", String(view === name));
    }
    document.body.dataset.view = name;  // chat-only controls hide outside the chat (chat.css)
    // window's history: chat.js's `history` is the conversation
    window.history.replaceState(null, "", name === offered[0] ? location.pathname : "#" + name);
    ({ chat: $("input"), translate: $("translate-source"), inspect: $("inspect-text") })[name].focus();
  }

  for (const view of VIEWS) $("tab-" + view).addEventListener("click", () => showView(view));
  // a link to "#inspect" (or "#translate") opens that view
  const hashView = () => VIEWS.find((view) => location.hash === "#" + view);
  const followHash = () => { const view = hashView(); if (view) showView(view); };
  window.addEventListener("hashchange", followHash);
  followHash();

  // --- what this model offers -----------------------------------------------------------------

  serverInfo.then((health) => {  // chat.js's fetch of /health (it reports a failure itself)
    const wanted = hashView();
    offered = health.views || offered;
    for (const view of VIEWS) $("tab-" + view).hidden = !offered.includes(view);
    if (!offered.includes(document.body.dataset.view)) showView(wanted || offered[0]);
    info = health.inspect;
    const attention = info.attention;
    translator = Boolean(attention && attention.kinds);
    for (const el of document.querySelectorAll("#inspect-view .attention-only")) el.hidden = !attention;
    for (const el of document.querySelectorAll("#inspect-view .next-only")) el.hidden = !info.next_token;
    for (const el of document.querySelectorAll("#inspect-view .translator-only")) el.hidden = !translator;
    if (translator) {  // the text asked for is the English source
      Object.assign($("inspect-text"), { dir: "ltr", lang: "en", placeholder: "An English sentence to translate…" });
    }
    if (attention) {
      const options = (n, word) => range(n).map((i) => option(i, word + " " + number.format(i + 1)));
      $("inspect-layer").replaceChildren(...options(attention.layers, "لایه"));
      $("inspect-head").append(...options(attention.heads, "سر"));
    }
    const notes = [];
    if (!attention) {
      notes.push(`مدل این سرور از خانواده‌ی ${info.family} است و توجه ندارد؛ فقط توکن بعدی را نشان می‌دهد.`);
    }
    if (translator) {
      notes.push("مدل این سرور مترجم (seq2seq) است: جمله‌ای انگلیسی بنویسید تا ببینید هنگام ترجمه به کجا نگاه می‌کند.");
    } else if (!info.next_token) {
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

  async function loadAttention(text, target) {
    const layer = Number($("inspect-layer").value || 0);
    const body = { text, layer };
    if (translator) {
      body.kind = $("inspect-kind").value;
      if (target.trim()) body.target = target;
    }
    const data = await post("/inspect/attention", body);
    shown = { text, target, rows: data.rows || data.tokens, cols: data.cols || data.tokens, causal: data.causal,
      layer, kind: data.kind || null, heads: data.weights[layer] };
    if (translator) {
      const read = $("inspect-read");
      read.textContent = `ترجمه‌ای که رمزگشا خواند: «${data.target}»` + (data.target_cut ? " (فقط آغازش)" : "");
      read.hidden = false;
    }
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
    if (info.attention) jobs.push(loadAttention(text, $("inspect-target").value));
    if (info.next_token) jobs.push(loadNext(text));
    inspect(jobs);
  });

  // another layer (or kind) is another request (the reply carries one layer); another head is on hand
  const reload = () => { if (shown) inspect([loadAttention(shown.text, shown.target)]); };
  $("inspect-layer").addEventListener("change", reload);
  $("inspect-kind").addEventListener("change", reload);
  $("inspect-head").addEventListener("change", () => { if (shown) drawHeatmap(); });

  for (const box of [$("inspect-text"), $("inspect-target")]) {
    box.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        $("inspect-form").requestSubmit();
      }
    });
  }

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

  // What a translator's rows and columns are (a language model's: "پرسش" and "کلید", the query and the key)
  const AXES = {
    cross: ["توکن فارسی (پرسش)", "توکن انگلیسی (کلید)"],
    encoder: ["توکن انگلیسی (پرسش)", "توکن انگلیسی (کلید)"],
    decoder: ["توکن فارسی (پرسش)", "توکن فارسی (کلید)"],
  };

  function drawHeatmap() {
    const { rows, cols, causal, kind } = shown;
    const weights = selectedMatrix();
    const T = rows.length;
    const masked = (q, k) => causal && k > q;
    const [rowName, colName] = AXES[kind] || ["پرسش", "کلید"];
    // the colour scale tops at the largest weight, leaving out a decoder's first row: its one
    // query can only look at itself (weight 1), which would wash every other cell out
    let max = 0;
    weights.forEach((row, q) => row.forEach((w, k) => {
      if (!masked(q, k) && !(causal && q === 0 && T > 1)) max = Math.max(max, w);
    }));
    max = max || 1;

    const root = SokhanView.heatmap({
      values: weights, rows: rows.map(visible), cols: cols.map(visible), row_name: rowName, col_name: colName,
      value_name: "وزن", stops: RAMP, vmin: 0, vmax: max, colorbar: false,  // #heat-legend is the colour key
      mask: causal ? weights.map((row, q) => row.map((_, k) => masked(q, k))) : null,
      mask_label: "پوشیده: کلید در آینده‌ی پرسش است",
    }, { rtl: !(kind === "cross" || kind === "encoder"), tip, format: (v) => weightFormat.format(v) });
    root.id = "heatmap";
    root.setAttribute("role", "img");
    root.setAttribute("aria-label", `نقشه‌ی توجه لایه‌ی ${number.format(shown.layer + 1)}، ${number.format(T)} توکن`);
    Object.assign(root.dataset, { tokens: T, cols: cols.length, layer: shown.layer, head: $("inspect-head").value });
    if (kind) root.dataset.kind = kind;
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
