// sokhan's "Translate" view, shown for a translation model (/health's "views"): an English sentence in,
// its Persian translation streamed into a right-to-left box. It asks POST /v1/translations with
// stream: true, read with chat.js's `serverEvents`, with the key from the header like the chat does.
// With beam 1 (greedy decoding) the words come as they are chosen; a beam search sends its
// translation in one piece when it is done.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const source = $("translate-source");
  const output = $("translation");
  const button = $("translate-run");
  const view = $("translate-view");
  let controller = null;   // AbortController of the translation being streamed, if any

  serverInfo.then((health) => {  // chat.js's fetch of /health (it reports a failure itself)
    const info = health.translation;
    if (!info) return;
    const beam = $("translate-beam");
    beam.max = info.max_beam;
  }, () => {});

  function setStatus(text, error = false) {
    const status = $("translate-status");
    status.textContent = text;
    status.classList.toggle("error", error);
  }

  function setBusy(busy) {
    button.textContent = busy ? "ایست" : "ترجمه کن";
    button.type = busy ? "button" : "submit";
    button.classList.toggle("secondary", busy);
    output.classList.toggle("streaming", busy);
    view.dataset.state = busy ? "busy" : view.dataset.state;
  }

  async function translate(text) {
    const beamInput = $("translate-beam");
    const beam = Math.min(Number(beamInput.max) || 16, Math.max(1, Math.round(Number(beamInput.value) || 1)));
    const headers = { "Content-Type": "application/json" };
    const key = $("api-key").value.trim();
    if (key) headers["Authorization"] = "Bearer " + key;
    output.textContent = "";
    output.dataset.done = "false";
    setStatus(beam > 1 ? "جست‌وجوی پرتو…" : "");
    controller = new AbortController();
    setBusy(true);
    let state = "done";
    try {
      const response = await fetch("/v1/translations", {
        method: "POST", headers, body: JSON.stringify({ text, beam, stream: true }), signal: controller.signal,
      });
      if (!response.ok) {
        const err = await response.json().catch(() => ({}));
        throw new Error((err.error && err.error.message) || response.status + " " + response.statusText);
      }
      for await (const chunk of serverEvents(response)) {
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.delta) output.textContent += chunk.delta;
        if (chunk.done) {
          setStatus(chunk.truncated ? "متن انگلیسی از بافت مدل بلندتر بود: فقط آغازش ترجمه شد." : "");
        }
      }
    } catch (err) {
      if (err.name !== "AbortError") {
        state = "error";
        setStatus(String(err.message || err), true);
      }
    } finally {
      controller = null;
      setBusy(false);
      output.dataset.done = "true";
      view.dataset.state = state;
    }
  }

  $("translate-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = source.value;
    if (!text.trim() || controller) return;
    translate(text);
  });

  button.addEventListener("click", () => {
    if (controller) controller.abort();  // while streaming the button is "stop"
  });

  source.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("translate-form").requestSubmit();
    }
  });
})();
