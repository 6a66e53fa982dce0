// sokhan's one renderer of pictures (src/sokhan/inspect/picture.py's panels: heatmap, bars, tokens, xy).
// `SokhanView.heatmap(panel, options)` and its siblings each return a DOM element; `SokhanView.draw`
// draws a whole Picture. The offline pages (html.py) embed this file inline and draw their
// #sokhan-data at once; the web server's Inspect view (serve/static/inspect.js) calls it with its
// own options (right to left, Persian names, fa-IR numbers). No libraries and no network.
"use strict";
window.SokhanView = (function () {
  const RTL = /[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]/;
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf"];  // matplotlib's tab10, as in the PNG
  const MOST_CELLS = 20000;  // above this a heatmap is one image, not an element per cell: pages stay light
  // The SVG namespace, read off a parsed <svg>: an offline page must not contain a single URL.
  const NS = (() => {
    const probe = document.createElement("div");
    probe.innerHTML = "<svg></svg>";
    return probe.firstChild.namespaceURI;
  })();
  let uid = 0;  // ids of gradients and clip paths, unique in the document

  const fmt = (v) => Math.abs(v) >= 1e4
    ? [[1e9, "G"], [1e6, "M"], [1e3, "k"]].map(([d, u]) => Math.abs(v) >= d ? +(v / d).toPrecision(4) + u : null)
      .find((x) => x)
    : (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : String(+v.toFixed(4));
  const shown = (v, format) => (v === null || v === undefined ? "—" : format(v));
  const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));

  function rgb(stops, lo, hi, v) {
    const t = clamp((v - lo) / ((hi - lo) || 1), 0, 1);
    const x = t * (stops.length - 1), i = Math.min(stops.length - 2, Math.floor(x)), f = x - i;
    return stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * f));
  }
  const css = (c) => `rgb(${c[0]},${c[1]},${c[2]})`;
  const dark = (c) => 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] < 128;

  // A panel's JSON with the caller's options on top (an undefined option keeps the default).
  function settings(panel, options = {}) {
    const p = { format: fmt, locale: "en", rtl: false, tip: document.getElementById("tip"), ...panel };
    for (const [k, v] of Object.entries(options)) if (v !== undefined) p[k] = v;
    return p;
  }

  function html(tag, text = "", attrs = {}) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    el.textContent = text;
    return el;
  }

  function svg(tag, attrs = {}, parent = null) {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (parent) parent.appendChild(el);
    return el;
  }

  // A label in its own direction: a Persian one runs right to left, and its anchor still names the
  // same side of the label (for a right-to-left text, "start" is its right edge).
  function text(parent, x, y, s, attrs = {}) {
    const rtl = RTL.test(s), anchor = attrs["text-anchor"] || "start";
    const side = rtl ? { start: "end", end: "start", middle: "middle" }[anchor] : anchor;
    const el = svg("text", { x, y, ...attrs, "text-anchor": side, direction: rtl ? "rtl" : "ltr" }, parent);
    el.textContent = String(s);
    return el;
  }

  // --- the tooltip: lines of text beside the pointer, kept inside the window ---------------------

  const bdi = (s) => html("bdi", s);
  const said = (name, value) => [name + ": ", html("b", value)];

  function hover(el, tip, describe) {
    if (!tip) return;
    el.addEventListener("mousemove", (ev) => {
      const lines = describe(ev);
      tip.hidden = !lines;
      if (!lines) return;
      tip.replaceChildren(...lines.map((parts) => { const line = html("div"); line.append(...parts); return line; }));
      tip.style.left = Math.max(4, Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 4)) + "px";
      tip.style.top = Math.max(4, Math.min(ev.clientY + 14, window.innerHeight - tip.offsetHeight - 4)) + "px";
    });
    el.addEventListener("mouseleave", () => { tip.hidden = true; });
  }

  // --- heatmap -----------------------------------------------------------------------------------

  // One hatch for every masked cell of the page, kept outside the pictures: redrawing one keeps it.
  function hatch() {
    if (document.getElementById("masked-hatch")) return;
    const holder = svg("svg", { width: 0, height: 0, "aria-hidden": "true", style: "position:absolute" });
    const pattern = svg("pattern", { id: "masked-hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse",
      patternTransform: "rotate(45)" }, svg("defs", {}, holder));
    svg("rect", { width: 6, height: 6, fill: "#e6e6e6" }, pattern);
    svg("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: "#a0a0a0", "stroke-width": 1.5 }, pattern);
    document.body.appendChild(holder);
  }

  function colourBar(p, parent, x, y, h) {  // a vertical gradient with its range and name
    const id = "sokhan-g" + (++uid);
    const gradient = svg("linearGradient", { id, x1: 0, y1: 1, x2: 0, y2: 0 }, svg("defs", {}, parent));
    p.stops.forEach((c, i) => svg("stop", { offset: i / (p.stops.length - 1), "stop-color": css(c) }, gradient));
    svg("rect", { x, y, width: 12, height: h, fill: `url(#${id})`, stroke: "#999" }, parent);
    text(parent, x + 16, y + 8, p.format(p.vmax), { "font-size": 10 });
    text(parent, x + 16, y + h, p.format(p.vmin), { "font-size": 10 });
    text(parent, 0, 0, p.value_name, { "font-size": 11, "text-anchor": "middle",
      transform: `translate(${x + 50},${y + h / 2}) rotate(90)` });
  }

  // Options: rtl (first column rightmost, row labels on the right), stops, vmin, vmax, colorbar,
  // tip (the tooltip element), format (number → text). Cells are <rect class="cell"> with
  // data-row, data-col and data-value; masked ones are also "masked" and hatched.
  function heatmap(panel, options) {
    const p = settings(panel, options);
    const n = p.values.length, m = p.values[0].length;
    const masked = (i, j) => Boolean(p.mask && p.mask[i][j]);
    const colour = (v) => (v === null ? "#ffffff" : css(rgb(p.stops, p.vmin, p.vmax, v)));
    const c = clamp(480 / Math.max(n, m), 2, p.annotate ? 64 : 26);  // px per cell (room for a number)
    const numeric = p.rows.concat(p.cols).every((s) => /^\d+$/.test(s));  // position numbers need fewer labels
    const fs = clamp(c - 1, 7, 12), step = Math.max(1, Math.ceil(fs / c), numeric ? Math.ceil(Math.max(n, m) / 16) : 1);
    const longest = (labels) => Math.min(18, Math.max(1, ...labels.map((s) => s.length)));
    const labelRoom = 26 + 7 * longest(p.rows), barRoom = p.colorbar ? 80 : 10;
    const top = 6, bottom = 30 + 7 * longest(p.cols), w = m * c, h = n * c;
    const gx = p.rtl ? barRoom : labelRoom;                      // the grid's left edge
    const x = (j) => gx + (p.rtl ? m - 1 - j : j) * c, y = (i) => top + i * c;
    const root = svg("svg", { class: "heatmap", direction: "ltr", "font-size": fs });
    hatch();

    if (n * m <= MOST_CELLS) {
      const cells = svg("g", { class: "cells" }, root);
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < m; j++) {
          const v = p.values[i][j];
          svg("rect", { class: masked(i, j) ? "cell masked" : "cell", x: x(j), y: y(i), width: c, height: c,
            "data-row": i, "data-col": j, "data-value": v ?? "",
            fill: masked(i, j) ? "url(#masked-hatch)" : colour(v) }, cells);
          if (p.annotate && v !== null && !masked(i, j)) {  // the value in the cell, as the PNG writes it
            text(cells, x(j) + c / 2, y(i) + c / 2, Number.isInteger(v) ? String(v) : shown(v, p.format),
              { class: "cell-value", "text-anchor": "middle", "dominant-baseline": "central", "pointer-events": "none",
                fill: dark(rgb(p.stops, p.vmin, p.vmax, v)) ? "#fff" : "#000" });
          }
        }
      }
    } else {  // one canvas-drawn image, k canvas px per cell
      const k = clamp(Math.floor(1200 / Math.max(n, m)), 1, 10);
      const canvas = document.createElement("canvas");
      canvas.width = m * k; canvas.height = n * k;
      const g = canvas.getContext("2d");
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < m; j++) {
          const cx = (x(j) - gx) / c * k, cy = i * k;
          g.fillStyle = masked(i, j) ? "#e6e6e6" : colour(p.values[i][j]);
          g.fillRect(cx, cy, k, k);
          if (masked(i, j) && k >= 4) {  // the hatch, one stroke per cell
            g.strokeStyle = "#a0a0a0"; g.beginPath(); g.moveTo(cx, cy + k); g.lineTo(cx + k, cy); g.stroke();
          }
        }
      }
      svg("image", { href: canvas.toDataURL(), x: gx, y: top, width: w, height: h, preserveAspectRatio: "none",
        style: "image-rendering:pixelated" }, root);
    }
    svg("rect", { x: gx, y: top, width: w, height: h, fill: "none", stroke: "#666" }, root);

    const rows = svg("g", { class: "row-labels", "dominant-baseline": "middle" }, root);
    const cols = svg("g", { class: "col-labels", "dominant-baseline": "middle" }, root);
    for (let i = 0; i < n; i += step) {
      text(rows, p.rtl ? gx + w + 4 : gx - 4, y(i) + c / 2, p.rows[i], { "text-anchor": p.rtl ? "start" : "end" });
    }
    for (let j = 0; j < m; j += step) {  // turned a quarter: each reads upwards, ending just under the grid
      text(cols, 0, 0, p.cols[j], { "text-anchor": "end",
        transform: `translate(${x(j) + c / 2},${top + h + 4}) rotate(-90)` });
    }
    const W = labelRoom + w + barRoom;
    text(root, 0, 0, p.row_name, { "font-size": 12, "text-anchor": "middle",
      transform: `translate(${p.rtl ? W - 12 : 12},${top + h / 2}) rotate(-90)` });
    text(root, gx + w / 2, top + h + bottom - 6, p.col_name, { "font-size": 12, "text-anchor": "middle" });
    if (p.colorbar) colourBar(p, root, p.rtl ? 4 : gx + w + 12, top, h);
    let height = top + h + bottom;
    if (p.mask && p.mask.some((row) => row.some(Boolean))) {  // the key to the hatch
      svg("rect", { x: p.rtl ? gx + w - 12 : gx, y: height, width: 12, height: 12, fill: "url(#masked-hatch)",
        stroke: "#a0a0a0" }, root);
      text(root, p.rtl ? gx + w - 18 : gx + 18, height + 10, p.mask_label,
        { "font-size": 11, "text-anchor": p.rtl ? "end" : "start" });
      height += 20;
    }
    root.setAttribute("width", W);
    root.setAttribute("height", height);

    const image = root.querySelector("image");
    const cellAt = (ev) => {
      if (!image) {
        const cell = ev.target.closest("rect.cell");
        return cell && [Number(cell.dataset.row), Number(cell.dataset.col)];
      }
      const r = image.getBoundingClientRect();
      const i = Math.floor((ev.clientY - r.top) / r.height * n), j = Math.floor((ev.clientX - r.left) / r.width * m);
      if (i < 0 || j < 0 || i >= n || j >= m) return null;
      return [i, p.rtl ? m - 1 - j : j];
    };
    hover(root, p.tip, (ev) => {
      const at = cellAt(ev);
      if (!at) return null;
      const [i, j] = at;
      return [[`${p.row_name}: «`, bdi(p.rows[i]), `» · ${p.col_name}: «`, bdi(p.cols[j]), "»"],
        masked(i, j) ? [p.mask_label] : said(p.value_name, shown(p.values[i][j], p.format))];
    });
    return root;
  }

  // --- bars --------------------------------------------------------------------------------------

  // An <ol class="bars"> of <li class="bar" data-value>, in the panel's order (likeliest first, as
  // panels are made): the label, a track filled relative to the largest value, and the value
  // (a percentage in options.locale when panel.percent).
  function bars(panel, options) {
    const p = settings(panel, options);
    const percent = new Intl.NumberFormat(p.locale,
      { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });
    const value = (v) => (p.percent ? percent.format(v) : shown(v, p.format));
    const best = Math.max(...p.values) || 1;
    const list = html("ol", "", { class: "bars" });
    p.labels.forEach((label, i) => {
      const v = p.values[i];
      const track = html("span", "", { class: "bar-track" });
      const fill = html("span", "", { class: "bar-fill" });
      fill.style.inlineSize = (100 * Math.max(0, v) / best).toFixed(1) + "%";
      track.appendChild(fill);
      const li = html("li", "", { class: "bar", "data-value": v, "data-i": i });
      li.append(html("span", label, { class: "bar-token" }), track, html("span", value(v), { class: "bar-value" }));
      list.appendChild(li);
    });
    hover(list, p.tip, (ev) => {
      const li = ev.target.closest("li.bar");
      if (!li) return null;
      const i = Number(li.dataset.i);
      return [[`${p.label_name}: «`, bdi(p.labels[i]), "»"], said(p.value_name, value(p.values[i]))];
    });
    return list;
  }

  // --- a text as coloured tokens -----------------------------------------------------------------

  function tokens(panel, options) {
    const p = settings(panel, options);
    const row = html("div", "", { class: "tokens", dir: p.rtl ? "rtl" : "ltr" });
    p.tokens.forEach((t, i) => {
      const v = p.values[i], c = v === null ? [217, 217, 217] : rgb(p.stops, p.vmin, p.vmax, v);
      const span = html("span", t, { "data-i": i, dir: "auto" });
      span.style.background = css(c);
      span.style.color = dark(c) ? "#fff" : "#000";
      row.appendChild(span);
    });
    const ramp = html("div", "", { class: "ramp" });
    ramp.style.background = `linear-gradient(to right, ${p.stops.map(css).join(", ")})`;
    const ends = html("div", "", { class: "ramp-labels" });
    ends.append(html("span", p.format(p.vmin)), html("span", p.value_name), html("span", p.format(p.vmax)));
    const holder = html("div");
    holder.append(row, ramp, ends);
    hover(row, p.tip, (ev) => {
      const el = ev.target.closest("[data-i]");
      if (!el) return null;
      const i = Number(el.dataset.i);
      const lines = [[bdi(p.tokens[i])], said(p.value_name, shown(p.values[i], p.format))];
      return p.notes && p.notes[i] ? [...lines, [p.notes[i]]] : lines;
    });
    return holder;
  }

  // --- x–y plot ----------------------------------------------------------------------------------

  function niceTicks(lo, hi, log) {
    if (log) {
      const out = [];
      for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
        for (const f of (Math.log10(hi / lo) < 2 ? [1, 2, 5] : [1])) {
          const v = f * 10 ** e;
          if (v >= lo && v <= hi) out.push(v);
        }
      }
      return out;
    }
    const raw = (hi - lo) / 6, mag = 10 ** Math.floor(Math.log10(raw || 1));
    const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw) || mag;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
    return out;
  }

  // options.size: [width, height] in px (a Picture's panel_px)
  function xy(panel, options) {
    const p = settings(panel, options);
    const [W, H] = p.size || [540, 340], L = 70, R = 16, T = 10, B = 46, pw = W - L - R, ph = H - T - B;
    const ok = (v, log) => v !== null && isFinite(v) && (!log || v > 0);
    const xs = [], ys = [];
    p.series.forEach((s) => s.x.forEach((x, i) => {
      if (ok(x, p.log_x) && ok(s.y[i], p.log_y)) { xs.push(x); ys.push(s.y[i]); }
    }));
    const range = (vals, log) => {
      let lo = vals.reduce((a, b) => Math.min(a, b), Infinity), hi = vals.reduce((a, b) => Math.max(a, b), -Infinity);
      if (!vals.length) { lo = log ? 1 : 0; hi = log ? 10 : 1; }
      if (log) { lo = Math.log10(lo); hi = Math.log10(hi); }
      if (hi === lo) { hi += 0.5; lo -= 0.5; }
      const pad = (hi - lo) * 0.04;
      return [lo - pad, hi + pad];
    };
    const [x0, x1] = range(xs, p.log_x);
    const [y0, y1] = p.y_range ? p.y_range.map((v) => (p.log_y ? Math.log10(v) : v)) : range(ys, p.log_y);
    const clip = "sokhan-c" + (++uid);
    const sx = (v) => L + ((p.log_x ? Math.log10(v) : v) - x0) / (x1 - x0) * pw;
    const sy = (v) => T + ph - ((p.log_y ? Math.log10(v) : v) - y0) / (y1 - y0) * ph;
    const root = svg("svg", { width: W, height: H, direction: "ltr" });
    svg("rect", { x: L, y: T, width: pw, height: ph, fill: "none", stroke: "#666" }, root);
    svg("rect", { x: L, y: T, width: pw, height: ph }, svg("clipPath", { id: clip }, svg("defs", {}, root)));
    const unlog = (v, log) => (log ? 10 ** v : v);
    for (const v of niceTicks(unlog(x0, p.log_x), unlog(x1, p.log_x), p.log_x)) {
      svg("line", { x1: sx(v), y1: T, x2: sx(v), y2: T + ph, stroke: "#0001" }, root);
      text(root, sx(v), T + ph + 14, p.format(v), { "font-size": 10, "text-anchor": "middle" });
    }
    for (const v of niceTicks(unlog(y0, p.log_y), unlog(y1, p.log_y), p.log_y)) {
      svg("line", { x1: L, y1: sy(v), x2: L + pw, y2: sy(v), stroke: "#0001" }, root);
      text(root, L - 4, sy(v), p.format(v), { "font-size": 10, "text-anchor": "end", "dominant-baseline": "middle" });
    }
    text(root, L + pw / 2, H - 8, p.x_name, { "font-size": 12, "text-anchor": "middle" });
    text(root, 0, 0, p.y_name, { "font-size": 12, "text-anchor": "middle",
      transform: `translate(14,${T + ph / 2}) rotate(-90)` });
    const points = [];  // [px, py, series, index] for hover
    const colours = new Map();
    let cycle = 0;
    p.series.forEach((s) => {
      const colour = s.color || PALETTE[cycle++ % PALETTE.length];
      colours.set(s, colour);
      let path = [];
      const flush = () => {
        if (path.length > 1 && s.mode !== "markers") {
          svg("polyline", { points: path.join(" "), fill: "none", stroke: colour, "stroke-width": 1.4,
            "clip-path": `url(#${clip})`, ...(s.dashed ? { "stroke-dasharray": "5 3" } : {}) }, root);
        }
        path = [];
      };
      s.x.forEach((x, i) => {
        const y = s.y[i];
        if (!ok(x, p.log_x) || !ok(y, p.log_y)) { flush(); return; }
        const px = +sx(x).toFixed(1), py = +sy(y).toFixed(1);
        path.push(px + "," + py);
        if (py < T || py > T + ph) return;  // outside a fixed y range: the line is clipped, no dot
        points.push([px, py, s, i]);
        if (s.mode !== "line") {
          svg("circle", { cx: px, cy: py, r: s.mode === "markers" ? 2.2 : 3, fill: colour, "fill-opacity": 0.8 }, root);
        }
        if (s.annotate && s.labels) text(root, px + 4, py - 4, s.labels[i], { "font-size": 11 });
      });
      flush();
    });
    const named = p.series.filter((s) => s.name && s.legend);
    if (p.legend && named.length) {
      const lx = L + pw - 30 - 6 * Math.max(...named.map((s) => s.name.length));
      named.forEach((s, i) => {
        const y = T + 12 + i * 15;
        svg("line", { x1: lx, y1: y, x2: lx + 18, y2: y, stroke: colours.get(s), "stroke-width": 3 }, root);
        text(root, lx + 23, y, s.name, { "font-size": 10, "dominant-baseline": "middle" });
      });
    }
    hover(root, p.tip, (ev) => {
      const r = root.getBoundingClientRect(), mx = ev.clientX - r.left, my = ev.clientY - r.top;
      let best = null, bestD = 400;  // within 20 px
      for (const pt of points) {
        const d = (pt[0] - mx) ** 2 + (pt[1] - my) ** 2;
        if (d < bestD) { bestD = d; best = pt; }
      }
      if (!best) return null;
      const [, , s, i] = best;
      return [...(s.labels ? [[bdi(s.labels[i])]] : []), ...(s.name ? [[s.name]] : []),
        said(p.x_name, p.format(s.x[i])), said(p.y_name, p.format(s.y[i]))];
    });
    return root;
  }

  // --- a whole Picture ---------------------------------------------------------------------------

  const views = { heatmap, bars, tokens, xy };

  function draw(spec, root, tip) {
    for (const p of spec.panels) {
      const fig = html("figure");
      fig.append(html("figcaption", p.title, { dir: "auto" }), views[p.kind](p, { tip, size: spec.panel_px }));
      root.appendChild(fig);
    }
  }

  const data = document.getElementById("sokhan-data");  // an offline page: draw what it embeds
  if (data) draw(JSON.parse(data.textContent), document.getElementById("panels"), document.getElementById("tip"));
  return { ...views, draw };
})();
