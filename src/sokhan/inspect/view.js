// sokhan inspect: draws the picture described by this page's embedded JSON as inline SVG,
// and shows the value under the pointer. No libraries and no network: the page stands alone.
"use strict";
(function () {
  const spec = JSON.parse(document.getElementById("sokhan-data").textContent);
  const tip = document.getElementById("tip");
  const RTL = /[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]/;
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf"];  // matplotlib's tab10, as in the PNG
  let uid = 0;

  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  // Right-to-left labels are isolated (RLI … PDI) so they keep their own order wherever they sit.
  const iso = (s) => (RTL.test(s) ? "\u2067" + s + "\u2069" : s);
  const bdi = (s) => `<bdi>${esc(s)}</bdi>`;
  const fmt = (v) => (v === null || v === undefined) ? "—"
    : Math.abs(v) >= 1e4 ? [[1e9, "G"], [1e6, "M"], [1e3, "k"]].map(([d, u]) => Math.abs(v) >= d ? +(v / d).toPrecision(4) + u : null).find((x) => x)
    : (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : String(+v.toFixed(4));
  const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));
  const text = (x, y, s, attrs = "") => `<text x="${x}" y="${y}" ${attrs}>${esc(iso(String(s)))}</text>`;

  function rgb(stops, lo, hi, v) {
    const t = clamp((v - lo) / ((hi - lo) || 1), 0, 1);
    const x = t * (stops.length - 1), i = Math.min(stops.length - 2, Math.floor(x)), f = x - i;
    return stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * f));
  }
  const css = (c) => `rgb(${c[0]},${c[1]},${c[2]})`;
  const dark = (c) => 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] < 128;

  function hover(el, describe) {
    el.addEventListener("mousemove", (ev) => {
      const html = describe(ev);
      if (!html) { tip.style.display = "none"; return; }
      tip.innerHTML = html;
      tip.style.display = "block";
      tip.style.left = ev.pageX + 14 + "px";
      tip.style.top = ev.pageY + 14 + "px";
    });
    el.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  }

  function colourBar(p, x, y, h) {  // a vertical gradient with its range and name
    const id = "g" + (++uid);
    const stops = p.stops.map((c, i) => `<stop offset="${i / (p.stops.length - 1)}" stop-color="${css(c)}"/>`);
    return `<defs><linearGradient id="${id}" x1="0" y1="1" x2="0" y2="0">${stops.join("")}</linearGradient></defs>` +
      `<rect x="${x}" y="${y}" width="12" height="${h}" fill="url(#${id})" stroke="#999"/>` +
      text(x + 16, y + 8, fmt(p.vmax), 'font-size="10"') + text(x + 16, y + h, fmt(p.vmin), 'font-size="10"') +
      text(0, 0, p.value_name, `font-size="11" text-anchor="middle" transform="translate(${x + 50},${y + h / 2}) rotate(90)"`);
  }

  function heatmap(p) {
    const n = p.values.length, m = p.values[0].length;
    const c = clamp(480 / Math.max(n, m), 2, 26);               // px per cell
    const numeric = p.rows.concat(p.cols).every((s) => /^\d+$/.test(s));  // position numbers need fewer labels
    const fs = clamp(c - 1, 7, 12), rowStep = Math.max(1, Math.ceil(fs / c), numeric ? Math.ceil(Math.max(n, m) / 16) : 1);
    const longest = (labels) => Math.min(18, Math.max(1, ...labels.map((s) => s.length)));
    const left = 26 + 7 * longest(p.rows), top = 6, bottom = 30 + 7 * longest(p.cols);
    const right = p.colorbar ? 80 : 10, w = m * c, h = n * c;
    const k = clamp(Math.floor(1200 / Math.max(n, m)), 1, 10);  // canvas px per cell
    const canvas = document.createElement("canvas");
    canvas.width = m * k; canvas.height = n * k;
    const g = canvas.getContext("2d");
    let masked = false;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < m; j++) {
        if (p.mask && p.mask[i][j]) {
          masked = true;
          g.fillStyle = "#e6e6e6"; g.fillRect(j * k, i * k, k, k);
          if (k >= 4) { g.strokeStyle = "#a0a0a0"; g.beginPath(); g.moveTo(j * k, i * k + k); g.lineTo(j * k + k, i * k); g.stroke(); }
        } else {
          g.fillStyle = p.values[i][j] === null ? "#ffffff" : css(rgb(p.stops, p.vmin, p.vmax, p.values[i][j]));
          g.fillRect(j * k, i * k, k, k);
        }
      }
    }
    const parts = [`<image href="${canvas.toDataURL()}" x="${left}" y="${top}" width="${w}" height="${h}" ` +
      `preserveAspectRatio="none" style="image-rendering:pixelated"/>`,
      `<rect x="${left}" y="${top}" width="${w}" height="${h}" fill="none" stroke="#666"/>`];
    for (let i = 0; i < n; i += rowStep) {
      parts.push(text(left - 4, top + (i + 0.5) * c, p.rows[i], `font-size="${fs}" text-anchor="end" dominant-baseline="middle"`));
    }
    for (let j = 0; j < m; j += rowStep) {
      parts.push(text(0, 0, p.cols[j], `font-size="${fs}" text-anchor="end" dominant-baseline="middle" ` +
        `transform="translate(${left + (j + 0.5) * c},${top + h + 4}) rotate(-90)"`));
    }
    parts.push(text(0, 0, p.row_name, `font-size="12" text-anchor="middle" transform="translate(12,${top + h / 2}) rotate(-90)"`));
    parts.push(text(left + w / 2, top + h + bottom - 6, p.col_name, 'font-size="12" text-anchor="middle"'));
    if (p.colorbar) parts.push(colourBar(p, left + w + 12, top, h));
    let height = top + h + bottom;
    if (masked) {
      parts.push(`<rect x="${left}" y="${height}" width="12" height="12" fill="#e6e6e6" stroke="#a0a0a0"/>` +
        text(left + 18, height + 10, p.mask_label, 'font-size="11"'));
      height += 20;
    }
    const holder = document.createElement("div");
    holder.innerHTML = `<svg width="${left + w + right}" height="${height}">${parts.join("")}</svg>`;
    const image = holder.querySelector("image");
    hover(image, (ev) => {
      const r = image.getBoundingClientRect();
      const i = Math.floor((ev.clientY - r.top) / r.height * n), j = Math.floor((ev.clientX - r.left) / r.width * m);
      if (i < 0 || j < 0 || i >= n || j >= m) return "";
      const where = `${esc(p.row_name)}: ${bdi(p.rows[i])} · ${esc(p.col_name)}: ${bdi(p.cols[j])}`;
      return where + "<br>" + (p.mask && p.mask[i][j] ? esc(p.mask_label)
        : `${esc(p.value_name)}: <b>${fmt(p.values[i][j])}</b>`);
    });
    return holder;
  }

  function bars(p) {
    const n = p.labels.length, rowH = 22, top = 6, plotW = 320;
    const left = 16 + 8 * Math.min(20, Math.max(1, ...p.labels.map((s) => s.length)));
    const most = Math.max(...p.values, 1e-9) * 1.25;
    const show = (v) => p.percent ? (100 * v).toFixed(1) + " %" : fmt(v);
    const parts = [];
    p.values.forEach((v, i) => {
      const y = top + i * rowH;
      parts.push(`<rect data-i="${i}" x="${left}" y="${y + 3}" width="${Math.max(1, v / most * plotW)}" height="${rowH - 6}" fill="#1f77b4"/>`);
      parts.push(text(left - 6, y + rowH / 2, p.labels[i], 'font-size="13" text-anchor="end" dominant-baseline="middle"'));
      parts.push(text(left + v / most * plotW + 4, y + rowH / 2, show(v), 'font-size="11" dominant-baseline="middle"'));
    });
    const h = top + n * rowH;
    parts.push(`<line x1="${left}" y1="${top}" x2="${left}" y2="${h}" stroke="#666"/>`);
    parts.push(text(left + plotW / 2, h + 20, p.value_name, 'font-size="12" text-anchor="middle"'));
    parts.push(text(0, 0, p.label_name, `font-size="12" text-anchor="middle" transform="translate(12,${top + n * rowH / 2}) rotate(-90)"`));
    const holder = document.createElement("div");
    holder.innerHTML = `<svg width="${left + plotW + 70}" height="${h + 30}">${parts.join("")}</svg>`;
    hover(holder, (ev) => {
      const el = ev.target.closest("[data-i]");
      if (!el) return "";
      const i = +el.dataset.i;
      return `${esc(p.label_name)}: ${bdi(p.labels[i])}<br>${esc(p.value_name)}: <b>${show(p.values[i])}</b>`;
    });
    return holder;
  }

  function tokens(p) {
    const holder = document.createElement("div");
    const row = p.tokens.map((t, i) => {
      const v = p.values[i], c = v === null ? [217, 217, 217] : rgb(p.stops, p.vmin, p.vmax, v);
      return `<span data-i="${i}" dir="auto" style="background:${css(c)};color:${dark(c) ? "#fff" : "#000"}">${esc(t)}</span>`;
    });
    const gradient = `linear-gradient(to right, ${p.stops.map(css).join(", ")})`;
    holder.innerHTML = `<div class="tokens" dir="${p.rtl ? "rtl" : "ltr"}">${row.join("")}</div>` +
      `<div class="bar" style="background:${gradient}"></div>` +
      `<div class="barlabels"><span>${fmt(p.vmin)}</span><span>${esc(p.value_name)}</span><span>${fmt(p.vmax)}</span></div>`;
    hover(holder.firstChild, (ev) => {
      const el = ev.target.closest("[data-i]");
      if (!el) return "";
      const i = +el.dataset.i, note = p.notes && p.notes[i] ? "<br>" + esc(p.notes[i]) : "";
      return `${bdi(p.tokens[i])}<br>${esc(p.value_name)}: <b>${fmt(p.values[i])}</b>${note}`;
    });
    return holder;
  }

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

  function xy(p) {
    const [W, H] = spec.panel_px || [540, 340], L = 70, R = 16, T = 10, B = 46, pw = W - L - R, ph = H - T - B;
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
    const clip = "c" + (++uid);
    const sx = (v) => L + ((p.log_x ? Math.log10(v) : v) - x0) / (x1 - x0) * pw;
    const sy = (v) => T + ph - ((p.log_y ? Math.log10(v) : v) - y0) / (y1 - y0) * ph;
    const parts = [`<rect x="${L}" y="${T}" width="${pw}" height="${ph}" fill="none" stroke="#666"/>`,
      `<defs><clipPath id="${clip}"><rect x="${L}" y="${T}" width="${pw}" height="${ph}"/></clipPath></defs>`];
    const unlog = (v, log) => (log ? 10 ** v : v);
    for (const v of niceTicks(unlog(x0, p.log_x), unlog(x1, p.log_x), p.log_x)) {
      parts.push(`<line x1="${sx(v)}" y1="${T}" x2="${sx(v)}" y2="${T + ph}" stroke="#0001"/>` +
        text(sx(v), T + ph + 14, fmt(v), 'font-size="10" text-anchor="middle"'));
    }
    for (const v of niceTicks(unlog(y0, p.log_y), unlog(y1, p.log_y), p.log_y)) {
      parts.push(`<line x1="${L}" y1="${sy(v)}" x2="${L + pw}" y2="${sy(v)}" stroke="#0001"/>` +
        text(L - 4, sy(v), fmt(v), 'font-size="10" text-anchor="end" dominant-baseline="middle"'));
    }
    parts.push(text(L + pw / 2, H - 8, p.x_name, 'font-size="12" text-anchor="middle"'));
    parts.push(text(0, 0, p.y_name, `font-size="12" text-anchor="middle" transform="translate(14,${T + ph / 2}) rotate(-90)"`));
    const points = [];  // [px, py, series, index] for hover
    let cycle = 0;
    p.series.forEach((s) => {
      s.colour = s.color || PALETTE[cycle++ % PALETTE.length];
      const dash = s.dashed ? ' stroke-dasharray="5 3"' : "";
      let path = [];
      const flush = () => {
        if (path.length > 1 && s.mode !== "markers") {
          parts.push(`<polyline points="${path.join(" ")}" fill="none" stroke="${s.colour}" stroke-width="1.4"${dash} clip-path="url(#${clip})"/>`);
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
        if (s.mode !== "line") parts.push(`<circle cx="${px}" cy="${py}" r="${s.mode === "markers" ? 2.2 : 3}" fill="${s.colour}" fill-opacity="0.8"/>`);
        if (s.annotate && s.labels) parts.push(text(px + 4, py - 4, s.labels[i], 'font-size="11"'));
      });
      flush();
    });
    const named = p.series.filter((s) => s.name && s.legend);
    if (p.legend && named.length) {
      const lx = L + pw - 30 - 6 * Math.max(...named.map((s) => s.name.length));
      named.forEach((s, i) => {
        const y = T + 12 + i * 15;
        parts.push(`<line x1="${lx}" y1="${y}" x2="${lx + 18}" y2="${y}" stroke="${s.colour}" stroke-width="3"/>` +
          text(lx + 23, y, s.name, 'font-size="10" dominant-baseline="middle"'));
      });
    }
    const holder = document.createElement("div");
    holder.innerHTML = `<svg width="${W}" height="${H}">${parts.join("")}</svg>`;
    const svg = holder.firstChild;
    hover(svg, (ev) => {
      const r = svg.getBoundingClientRect(), mx = ev.clientX - r.left, my = ev.clientY - r.top;
      let best = null, bestD = 400;  // within 20 px
      for (const pt of points) {
        const d = (pt[0] - mx) ** 2 + (pt[1] - my) ** 2;
        if (d < bestD) { bestD = d; best = pt; }
      }
      if (!best) return "";
      const [, , s, i] = best;
      const label = s.labels ? bdi(s.labels[i]) + "<br>" : "";
      return `${label}${s.name ? esc(s.name) + "<br>" : ""}${esc(p.x_name)}: <b>${fmt(s.x[i])}</b><br>` +
        `${esc(p.y_name)}: <b>${fmt(s.y[i])}</b>`;
    });
    return holder;
  }

  const draw = { heatmap, bars, tokens, xy };
  const root = document.getElementById("panels");
  for (const p of spec.panels) {
    const fig = document.createElement("figure");
    const cap = document.createElement("figcaption");
    cap.dir = "auto";
    cap.textContent = p.title;
    fig.appendChild(cap);
    fig.appendChild(draw[p.kind](p));
    root.appendChild(fig);
  }
})();
