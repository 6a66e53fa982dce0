// sokhan's chat page. It talks to the same OpenAI-compatible API any client uses:
// POST /v1/chat/completions with stream: true, read with fetch + ReadableStream, because
// EventSource cannot send a POST body or an Authorization header.
"use strict";

const $ = (id) => document.getElementById(id);
const messagesBox = $("messages");
const input = $("input");
const sendButton = $("send");

let history = [];        // [{role, content}] sent with every request
let controller = null;   // AbortController of the reply being streamed, if any

// The server's /health, fetched once: the model's name, whether a key is needed, what it can show
// (inspect.js reads it too).
const serverInfo = fetch("/health").then((response) => response.json());

async function loadServerInfo() {
  try {
    const info = await serverInfo;
    $("model-name").textContent = info.model;
    $("api-key-field").hidden = !info.api_key_required;
    const maxTokens = $("max-tokens");
    maxTokens.max = info.max_tokens_cap;
    if (Number(maxTokens.value) > info.max_tokens_cap) maxTokens.value = info.max_tokens_cap;
  } catch (err) {
    addMessage("error", "سرور در دسترس نیست: " + err);
  }
}

function addMessage(role, text) {
  const el = document.createElement("div");
  el.className = "message " + role;
  el.setAttribute("dir", "auto");  // each message picks its own direction from its first strong letter
  el.textContent = text;
  messagesBox.appendChild(el);
  messagesBox.scrollTop = messagesBox.scrollHeight;
  return el;
}

function setBusy(busy) {
  sendButton.textContent = busy ? "ایست" : "بفرست";
  sendButton.type = busy ? "button" : "submit";
  sendButton.classList.toggle("secondary", busy);
}

// Yields the parsed JSON of each `data:` event; stops at `data: [DONE]`.
async function* serverEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }
}

async function send(text) {
  history.push({ role: "user", content: text });
  addMessage("user", text);
  const reply = addMessage("assistant", "");
  reply.classList.add("streaming");
  controller = new AbortController();
  setBusy(true);
  const headers = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) headers["Authorization"] = "Bearer " + key;
  const body = {
    messages: history,
    stream: true,
    temperature: Number($("temperature").value),
    max_tokens: Number($("max-tokens").value),
  };
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers, body: JSON.stringify(body), signal: controller.signal,
    });
    if (!response.ok) {
      const err = await response.json().catch(() => ({}));
      throw new Error((err.error && err.error.message) || response.status + " " + response.statusText);
    }
    for await (const chunk of serverEvents(response)) {
      if (chunk.error) throw new Error(chunk.error.message);
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) {
        reply.textContent += delta.content;
        messagesBox.scrollTop = messagesBox.scrollHeight;
      }
    }
    history.push({ role: "assistant", content: reply.textContent });
  } catch (err) {
    if (err.name === "AbortError") {
      history.push({ role: "assistant", content: reply.textContent });
    } else {
      history.pop();  // the user's turn got no reply: let them send it again
      reply.remove();
      addMessage("error", String(err.message || err));
    }
  } finally {
    reply.classList.remove("streaming");
    reply.dataset.done = "true";
    controller = null;
    setBusy(false);
  }
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = input.value.trim();
  if (!text || controller) return;
  input.value = "";
  send(text);
});

sendButton.addEventListener("click", () => {
  if (controller) controller.abort();  // while streaming the button is "stop"
});

input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});

$("new-chat").addEventListener("click", () => {
  if (controller) controller.abort();
  history = [];
  messagesBox.replaceChildren();
  input.focus();
});

loadServerInfo();
