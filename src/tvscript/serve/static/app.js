/* tvscript serve: the page's script. Loads the model info, sends the form to /api/stream
 * and renders the server-sent events as they arrive (fetch + ReadableStream, since
 * EventSource cannot POST). No framework, no build step. */
"use strict";

const $ = (id) => document.getElementById(id);
const CAST_SIZE = 12;        // checkboxes for the model's most frequent speakers
const DEFAULT_CAST = 4;      // ticked at first
const SELECT_SIZE = 60;      // speakers offered as the first speaker
// Same shape as the server's speaker pattern (corpus._SPEAKER): "name:" or "name (aside):".
const SPEAKER_LINE = /^([^\W_][^:()[\]"]{0,39}?)\s*(\([^()]*\))?\s*:(?=\s|$)\s*(.*)$/u;

const state = { text: "", fountain: null, seed: null, controller: null, renderQueued: false };

function setStatus(message, isError = false) {
  const el = $("status");
  el.textContent = message;
  el.classList.toggle("error", isError);
}

async function loadModel() {
  try {
    const resp = await fetch("/api/model");
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const info = await resp.json();
    $("model-name").textContent = info.name;
    $("model-ppl").textContent = typeof info.test_perplexity === "number" ? info.test_perplexity.toFixed(2) : "n/a";
    buildCast(info.speakers.slice(0, CAST_SIZE));
    buildSpeakerSelect(info.speakers.slice(0, SELECT_SIZE));
    const limits = info.limits || {};
    if (limits.max_new_tokens) $("max_new_tokens").max = limits.max_new_tokens;
    if (limits.max_prime_chars) $("prime").maxLength = limits.max_prime_chars;
  } catch (err) {
    $("model-name").textContent = "unavailable";
    $("model-ppl").textContent = "n/a";
    setStatus(`Could not load the model information (${err.message}).`, true);
  }
}

function buildCast(names) {
  const box = $("cast");
  box.replaceChildren();
  names.forEach((name, i) => {
    const id = `cast-${i}`;
    const input = Object.assign(document.createElement("input"), { type: "checkbox", id, value: name, checked: i < DEFAULT_CAST });
    const label = Object.assign(document.createElement("label"), { htmlFor: id, textContent: name });
    const item = document.createElement("div");
    item.className = "check";
    item.append(input, label);
    box.append(item);
  });
}

function buildSpeakerSelect(names) {
  const select = $("speaker");
  select.replaceChildren(new Option("— use the opening line as written —", ""));
  for (const name of names) select.append(new Option(name, name));
  if (names.length) select.value = names[0];
}

/* The request body. The seed is spliced in as digits: seeds go up to 2^63, past the
 * integers a JavaScript number holds exactly. */
function requestBody() {
  const speaker = $("speaker").value;
  const line = $("prime").value.trim();
  const prime = speaker ? `${speaker}:${line ? " " + line : ""}` : line;
  const cast = [...document.querySelectorAll("#cast input:checked")].map((el) => el.value);
  const body = {
    prime,
    max_new_tokens: Number($("max_new_tokens").value),
    temperature: Number($("temperature").value),
    top_p: Number($("top_p").value),
    no_self_reply: $("no_self_reply").checked,
    cast: cast.length ? cast : null,
  };
  const seed = $("seed").value.trim();
  if (seed && !/^\d{1,19}$/.test(seed)) throw new Error("the seed must be a whole number (digits only)");
  const json = JSON.stringify(body);
  return seed ? `${json.slice(0, -1)},"seed":${seed}}` : json;
}

function render() {
  state.renderQueued = false;
  const article = $("script");
  const frag = document.createDocumentFragment();
  for (const line of state.text.split("\n")) {
    if (!line.trim()) continue;
    const p = document.createElement("p");
    const match = SPEAKER_LINE.exec(line);
    if (match) {
      p.className = "turn";
      const who = document.createElement("strong");
      who.className = "speaker";
      who.textContent = `${match[1]}:`;
      const said = match[2] ? `${match[2]} ${match[3]}` : match[3];
      p.append(who, document.createTextNode(` ${said}`));
    } else {
      p.className = "direction";
      p.textContent = line;
    }
    frag.append(p);
  }
  article.replaceChildren(frag);
  article.scrollTop = article.scrollHeight;
}

function queueRender() {  // at most one re-render per frame, however fast words arrive
  if (!state.renderQueued) {
    state.renderQueued = true;
    requestAnimationFrame(render);
  }
}

function setBusy(busy) {
  $("generate").disabled = busy;
  $("stop").disabled = !busy;
  $("script").setAttribute("aria-busy", String(busy));
  $("copy").disabled = busy || !state.text;
  $("download-text").disabled = busy || !state.text;
  $("download-fountain").disabled = busy || !state.fountain;
  $("reuse-seed").disabled = busy || state.seed === null;
}

function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  return { event, data: data.length ? data.join("\n") : null };
}

async function generate(event) {
  event.preventDefault();
  let body;
  try {
    body = requestBody();
  } catch (err) {
    setStatus(err.message, true);
    return;
  }
  state.text = "";
  state.fountain = null;
  state.seed = null;
  state.controller = new AbortController();
  $("script").replaceChildren();
  setBusy(true);
  setStatus("Writing…");
  let finished = false;
  try {
    const resp = await fetch("/api/stream", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body,
      signal: state.controller.signal,
    });
    if (!resp.ok) {
      const err = await resp.json().catch(() => ({}));
      throw new Error(typeof err.detail === "string" ? err.detail : `HTTP ${resp.status}`);
    }
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const { event: kind, data } = parseEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        const payload = data ? JSON.parse(data) : {};
        if (kind === "piece" && payload.index === 0) {
          state.text += payload.text;
          queueRender();
        } else if (kind === "done") {
          finished = true;
          state.text = payload.texts[0];
          state.fountain = payload.fountain[0];
          state.seed = String(data.match(/"seed":\s*(\d+)/)[1]);  // digits, exact past 2^53
          const lines = state.text.split("\n").filter((l) => l.trim()).length;
          setStatus(`Done: ${lines} lines, seed ${state.seed}.`);
        } else if (kind === "error") {
          throw new Error(payload.detail || "generation failed");
        }
      }
    }
    if (!finished) throw new Error("the connection closed before the scene was finished");
  } catch (err) {
    if (err.name === "AbortError") setStatus("Stopped.");
    else setStatus(`Error: ${err.message}`, true);
  } finally {
    render();
    state.controller = null;
    setBusy(false);
  }
}

function download(text, filename) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
  const a = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function copyText() {
  try {
    await navigator.clipboard.writeText(state.text);
    setStatus("Copied to the clipboard.");
  } catch {
    // Without clipboard permission: fall back to a hidden textarea and execCommand.
    const area = Object.assign(document.createElement("textarea"), { value: state.text });
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    setStatus(ok ? "Copied to the clipboard." : "Copy failed: select the text and copy it by hand.", !ok);
  }
}

function filename(ext) {
  return `tvscript-${state.seed ?? "scene"}.${ext}`;
}

document.addEventListener("DOMContentLoaded", () => {
  $("controls").addEventListener("submit", generate);
  $("stop").addEventListener("click", () => state.controller?.abort());
  $("copy").addEventListener("click", copyText);
  $("download-text").addEventListener("click", () => download(state.text, filename("txt")));
  $("download-fountain").addEventListener("click", () => download(state.fountain, filename("fountain")));
  $("reuse-seed").addEventListener("click", () => {
    $("seed").value = state.seed;
    setStatus(`Seed ${state.seed} will be used again.`);
  });
  loadModel();
});
