// Browser demo of the ser service (served at /demo/ by ser.serving.service:EmotionService, see ser/serving/demo.py).
//
// Sends an uploaded, dropped or recorded clip to the same service's /predict (multipart field `audio`) and
// shows the answer: one bar per class with its probability, and for clips longer than the model window the
// per-window predictions as a timeline. Errors (4xx JSON bodies) are shown as the service words them.
// Recording uses getUserMedia + an AudioWorklet (recorder-worklet.js) and encodes a 16-bit PCM mono WAV
// here, since MediaRecorder's webm/opus is not a format the service decodes.
//
// The <main id="demo"> element carries data-state (idle | recording | busy | done | error) and data-runs
// (requests finished so far) for tests and screenshots (tests/model/test_demo_browser.py).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const root = $("demo");
  const fileInput = $("file");
  const recordButton = $("record");
  const PREDICT_URL = new URL("../predict", document.baseURI).href;
  const MAX_RECORD_S = 60; // the default serve.max_duration_s; the service refuses longer clips anyway
  const COLOURS = {
    neutral: "#8d99ae", calm: "#4cc9f0", happy: "#f4a300", sad: "#3a5ba0",
    angry: "#d62828", fearful: "#7b2cbf", disgust: "#2a9d8f", surprised: "#f15bb5",
  };
  const SPARE = ["#6c757d", "#e76f51", "#264653", "#a7c957", "#9d4edd", "#ffb703", "#118ab2", "#ef476f"];
  let playerUrl = null;
  let recording = null;

  const percent = (p) => `${(p * 100).toFixed(1)}%`;
  const seconds = (s) => `${Number(s).toFixed(2)} s`;
  const colour = (name, i) => COLOURS[name] || SPARE[i % SPARE.length];

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "style") Object.assign(node.style, value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value);
    }
    node.append(...children);
    return node;
  }

  function setState(state, message) {
    root.dataset.state = state;
    $("status").textContent = message;
    const busy = state === "busy";
    fileInput.disabled = busy || state === "recording";
    recordButton.disabled = busy;
    $("upload-label").classList.toggle("disabled", fileInput.disabled);
  }

  function finished() {
    root.dataset.runs = String(Number(root.dataset.runs) + 1);
  }

  function showError(name, status, message) {
    const box = $("error");
    box.replaceChildren(
      el("strong", {}, `Could not analyse ${name}`),
      status ? el("span", { class: "code" }, ` (HTTP ${status})`) : "",
      el("p", { class: "message" }, message),
    );
    box.hidden = false;
    $("result").hidden = true;
    setState("error", `${name}: refused.`);
    finished();
  }

  // Every refusal of the service has one shape: {"error": message, "code": stable code}.
  function errorText(response, body, text) {
    if (body && typeof body.error === "string" && body.error) {
      return body.code ? `${body.error} [${body.code}]` : body.error;
    }
    return text.trim() || response.statusText || "no message";
  }

  async function predict(blob, name) {
    $("error").hidden = true;
    setState("busy", `Analysing ${name}…`);
    if (playerUrl) URL.revokeObjectURL(playerUrl);
    playerUrl = URL.createObjectURL(blob);
    $("player").src = playerUrl;
    const form = new FormData();
    form.append("audio", blob, name);
    let response;
    let text;
    try {
      response = await fetch(PREDICT_URL, { method: "POST", body: form });
      text = await response.text();
    } catch (err) {
      showError(name, 0, `the service did not answer: ${err.message}`);
      return;
    }
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
    if (!response.ok || !body || typeof body.probabilities !== "object") {
      showError(name, response.status, errorText(response, body, text));
      return;
    }
    render(body, name);
    setState("done", `${name}: done.`);
    finished();
  }

  function renderBars(probabilities, label) {
    const rows = Object.entries(probabilities).map(([name, p], i) =>
      el("div", { class: name === label ? "bar top" : "bar", role: "listitem", dataset: { label: name, p: String(p) },
                  "aria-label": `${name}: ${percent(p)}` },
        el("span", { class: "name" }, name),
        el("span", { class: "track" },
          el("span", { class: "fill", style: { width: `${p * 100}%`, background: colour(name, i) } })),
        el("span", { class: "value" }, percent(p))));
    $("bars").replaceChildren(...rows);
  }

  function renderTimeline(windows, classes, duration) {
    const block = $("timeline-block");
    block.hidden = windows.length < 2;
    if (block.hidden) return;
    const end = Math.max(duration, windows[windows.length - 1].end_s);
    const columns = windows.map((w, i) => {
      const next = i + 1 < windows.length ? windows[i + 1].start_s : w.end_s;
      const top = w.probabilities[w.label];
      const stack = classes.map((name, k) =>
        el("span", { class: "seg", style: { height: `${w.probabilities[name] * 100}%`, background: colour(name, k) } }));
      const tip = `${seconds(w.start_s)} – ${seconds(w.end_s)}: ${w.label} ${percent(top)}`;
      return el("div", { class: "window", role: "listitem", title: tip, "aria-label": tip,
                         dataset: { label: w.label, start: String(w.start_s), end: String(w.end_s) },
                         style: { flexGrow: String(Math.max(next - w.start_s, 0.01)) } },
        el("span", { class: "cap", style: { background: colour(w.label, classes.indexOf(w.label)) } }, w.label),
        el("span", { class: "stack" }, ...stack.reverse()));
    });
    $("timeline").replaceChildren(...columns);
    const span = windows[0].end_s - windows[0].start_s;
    const hop = windows[1].start_s - windows[0].start_s;
    $("timeline-caption").textContent = `${windows.length} windows of ${seconds(span)}, one every ${seconds(hop)}. `
      + "Each column is one window: its top emotion above, the probabilities stacked below (hover for values).";
    $("axis-start").textContent = seconds(windows[0].start_s);
    $("axis-end").textContent = seconds(end);
    $("legend").replaceChildren(...classes.map((name, k) =>
      el("span", { class: "key" }, el("span", { class: "swatch", style: { background: colour(name, k) } }), name)));
  }

  function render(body, name) {
    const classes = Object.keys(body.probabilities);
    $("label").textContent = `${body.label} (${percent(body.probabilities[body.label])})`;
    const facts = [name, seconds(body.duration_s), `${body.source_sample_rate} Hz`,
                   `${body.windows.length} window${body.windows.length === 1 ? "" : "s"}`];
    $("meta").textContent = facts.concat(body.notes || []).join(" · ");
    $("model").textContent = ` · model ${body.model_version}`;
    renderBars(body.probabilities, body.label);
    renderTimeline(body.windows, classes, body.duration_s);
    $("result").hidden = false;
  }

  // --- WAV encoding and microphone recording -------------------------------------------------------------

  function encodeWav(chunks, rate) {
    const frames = chunks.reduce((n, c) => n + c.length, 0);
    const view = new DataView(new ArrayBuffer(44 + frames * 2));
    const text = (offset, s) => [...s].forEach((ch, i) => view.setUint8(offset + i, ch.charCodeAt(0)));
    text(0, "RIFF");
    view.setUint32(4, 36 + frames * 2, true);
    text(8, "WAVE");
    text(12, "fmt ");
    view.setUint32(16, 16, true); // fmt chunk size
    view.setUint16(20, 1, true); // PCM
    view.setUint16(22, 1, true); // mono
    view.setUint32(24, rate, true);
    view.setUint32(28, rate * 2, true); // byte rate
    view.setUint16(32, 2, true); // block align
    view.setUint16(34, 16, true); // bits per sample
    text(36, "data");
    view.setUint32(40, frames * 2, true);
    let offset = 44;
    for (const chunk of chunks) {
      for (let i = 0; i < chunk.length; i++, offset += 2) {
        const s = Math.max(-1, Math.min(1, chunk[i]));
        view.setInt16(offset, s < 0 ? s * 0x8000 : s * 0x7fff, true);
      }
    }
    return new Blob([view], { type: "audio/wav" });
  }

  async function startRecording() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.AudioWorkletNode) {
      showError("a recording", 0, "this browser cannot record here (the page needs https or localhost)");
      return;
    }
    $("error").hidden = true;
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (err) {
      showError("a recording", 0, `no microphone: ${err.message}`);
      return;
    }
    const context = new AudioContext();
    let tap;
    try {
      await context.audioWorklet.addModule(new URL("recorder-worklet.js", document.baseURI).href);
      tap = new AudioWorkletNode(context, "pcm-tap");
    } catch (err) {
      stream.getTracks().forEach((track) => track.stop());
      context.close();
      showError("a recording", 0, `cannot record: ${err.message}`);
      return;
    }
    const mute = context.createGain();
    mute.gain.value = 0;
    const chunks = [];
    tap.port.onmessage = (event) => chunks.push(event.data);
    context.createMediaStreamSource(stream).connect(tap);
    tap.connect(mute).connect(context.destination);
    const started = performance.now();
    const timer = setInterval(() => {
      const elapsed = (performance.now() - started) / 1000;
      $("rec-time").textContent = `${elapsed.toFixed(1)} s`;
      if (elapsed >= MAX_RECORD_S) stopRecording();
    }, 100);
    recording = { stream, context, chunks, timer };
    recordButton.textContent = "Stop";
    recordButton.dataset.recording = "true";
    setState("recording", "Recording… press Stop to analyse.");
  }

  async function stopRecording() {
    if (!recording) return;
    const { stream, context, chunks, timer } = recording;
    recording = null;
    clearInterval(timer);
    stream.getTracks().forEach((track) => track.stop());
    const rate = context.sampleRate;
    await context.close();
    recordButton.textContent = "Record";
    recordButton.dataset.recording = "false";
    $("rec-time").textContent = "";
    await predict(encodeWav(chunks, rate), "recording.wav");
  }

  // --- wiring ----------------------------------------------------------------------------------------------

  fileInput.addEventListener("change", () => {
    const file = fileInput.files[0];
    fileInput.value = ""; // the same file chosen again still fires `change`
    if (file) predict(file, file.name);
  });
  recordButton.addEventListener("click", () => (recording ? stopRecording() : startRecording()));
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (file && root.dataset.state !== "busy" && !recording) predict(file, file.name);
  });
})();
