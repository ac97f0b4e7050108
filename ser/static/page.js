// The live page: the microphone streamed to /emotion-stream, or a recording
// posted to /emotion-recognition; what comes back drawn as predict.py --plot
// draws a timeline (ser/inference.plot_timeline), plus the chunks' labels,
// Thayer's quadrant and the summary. Everything is drawn here, on canvases:
// the page fetches nothing but its own service.
'use strict';

// serve.py's default --max_audio_seconds: the limit obeyed when /health names none.
const DEFAULT_MAX_AUDIO_SECONDS = 600;
// The worklet's blocks: short enough that a frame's audio is not held back.
const BLOCK_SECONDS = 0.02;
// Zero crossings of the resampler's sinc on either side: stopband far below
// 16-bit quantisation noise, for 16 output samples of latency.
const ZERO_CROSSINGS = 16;
// plot_timeline's axes: the model's tanh range with a margin, matplotlib's first two colours.
const Y_LIMIT = 1.05;
const COLOURS = {arousal: '#1f77b4', valence: '#ff7f0e'};
const DIMENSIONS = ['arousal', 'valence'];
const MAX_PLOT_WORDS = 60;
const DEFAULT_FRAME_MS = 250;
const DEFAULT_CHUNK_MS = 5000;
// Frames shown as the trail behind the current point on Thayer's plane.
const TRAIL_FRAMES = 20;
const WORKLET_URL = '/static/capture-worklet.js';
// The stream's subprotocol, and the prefix of the one that carries the API key
// (a browser sets no header on a WebSocket): ser/service.py, KEY_SUBPROTOCOL_PREFIX.
const STREAM_SUBPROTOCOL = 'emotion-stream';
const KEY_SUBPROTOCOL_PREFIX = 'bearer.';

const MODALITIES = {
  both: 'the audio and the words',
  audio: 'the audio alone',
  text: 'the words alone',
};
const TEXT_SOURCES = {
  none: 'nothing: no words reached the text branch',
  transcript: 'the transcript, aligned to the audio',
  words: 'the words sent with the audio',
  recognised: 'the words the service recognised in the audio',
};
// Thayer's moods by (arousal, valence) sign.
const QUADRANTS = {
  'high,positive': 'exuberance: energetic and pleased',
  'high,negative': 'anxiety: energetic and displeased',
  'low,negative': 'depression: subdued and displeased',
  'low,positive': 'contentment: calm and pleased',
};
const CLOSE_MEANINGS = {
  1008: 'the service found the stream malformed',
  1011: 'a fault of the service, not of the audio',
  1013: 'the service has as many streams open as it takes: try again in a moment',
};
const INSECURE_ADVICE =
  'The browser lets a page use the microphone only over HTTPS or from this machine ' +
  '(http://localhost or http://127.0.0.1). Open the page as http://localhost:<port>, through an ' +
  'SSH tunnel (ssh -L <port>:localhost:<port> <server>) when the service runs elsewhere, or put ' +
  'the service behind HTTPS. A recording can be analysed from here all the same.';

class PageError extends Error {}

const elements = {};
let health = null;
let live = null;
let chosenFile = null;
let drawPending = false;

// What is on screen; window.emotionPage shows it to the console and the tests.
const view = {
  mode: null,
  frameMs: DEFAULT_FRAME_MS,
  chunkMs: DEFAULT_CHUNK_MS,
  frames: [],
  chunks: [],
  words: [],
  duration: 0,
  summary: null,
  take: null,
};

// ---------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------
function serviceMessage(body) {
  return body && (body.text || body.error);
}

async function callService(path, options, refused) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new PageError(`The service cannot be reached (${error.message}): is serve.py running?`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = null;
  }
  if (!response.ok || !body || body.status !== 'ok') {
    const said = serviceMessage(body);
    throw new PageError(`${refused} (${response.status}): ${said || response.statusText}`);
  }
  return body;
}

function apiKey() {
  return elements.apiKey.value.trim();
}

function keyHeaders() {
  return apiKey() ? {Authorization: `Bearer ${apiKey()}`} : {};
}

function streamSubprotocols() {
  if (!apiKey()) {
    return [STREAM_SUBPROTOCOL];
  }
  const bytes = String.fromCharCode(...new TextEncoder().encode(apiKey()));
  const base64url = btoa(bytes).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  return [STREAM_SUBPROTOCOL, KEY_SUBPROTOCOL_PREFIX + base64url];
}

function audioLimit() {
  const limit = health && health.max_audio_seconds;
  return typeof limit === 'number' ? limit : DEFAULT_MAX_AUDIO_SECONDS;
}

async function loadHealth() {
  try {
    health = await callService('/health', {}, 'The service is not ready');
  } catch (error) {
    health = null;
    elements.model.textContent = 'model unknown';
    showMessage(error.message);
    return false;
  }
  const model = health.model;
  elements.model.textContent = `model step ${model.step}, hearing ${MODALITIES[model.modality] ||
    model.modality}; audio at ${health.sample_rate} Hz, at most ${audioLimit()} s`;
  elements.keyRow.hidden = health.api_key_required !== true;
  const note = textBranchNote(model.modality, health.recognise === true);
  elements.textBranch.hidden = !note;
  elements.textBranch.textContent = note;
  return true;
}

function textBranchNote(modality, recognising) {
  if (modality === 'audio') {
    return '';
  }
  if (recognising) {
    return 'The service recognises your words as you speak, a phrase at a time, so the curves ' +
      'come a few seconds behind your voice.';
  }
  if (modality === 'both') {
    return 'This service runs no recogniser (serve.py --recognise): a live stream carries no ' +
      'words, so the model\'s text branch hears nothing and only the audio moves the curves. ' +
      'For the words, analyse a recording with its transcript.';
  }
  return 'This model hears words alone, and a live stream carries none (this service runs no ' +
    'recogniser: serve.py --recognise): its curves will not follow you. Analyse a recording ' +
    'with its transcript instead.';
}

// ---------------------------------------------------------------------------
// Live: microphone -> worklet -> resampler -> 16-bit PCM over the WebSocket
// ---------------------------------------------------------------------------
// Windowed-sinc interpolation, block by block: each output sample waits for
// the input samples its kernel reaches, and flush() ends the signal with zeros.
class Resampler {
  constructor(inputRate, outputRate) {
    this.step = inputRate / outputRate;
    this.cutoff = 0.5 * Math.min(1, 1 / this.step);
    this.half = Math.ceil(ZERO_CROSSINGS * Math.max(1, this.step));
    this.held = new Float32Array(0);
    this.heldStart = 0;
    this.received = 0;
    this.produced = 0;
  }

  push(samples) {
    const held = new Float32Array(this.held.length + samples.length);
    held.set(this.held);
    held.set(samples, this.held.length);
    this.held = held;
    this.received += samples.length;
    return this.run(false);
  }

  flush() {
    return this.run(true);
  }

  run(final) {
    const out = [];
    for (;;) {
      const time = this.produced * this.step;
      if (final ? time >= this.received : time + this.half >= this.received) {
        break;
      }
      out.push(this.at(time));
      this.produced += 1;
    }
    const keep = Math.max(this.heldStart, Math.ceil(this.produced * this.step - this.half));
    this.held = this.held.slice(keep - this.heldStart);
    this.heldStart = keep;
    return Float32Array.from(out);
  }

  at(time) {
    const first = Math.max(this.heldStart, Math.ceil(time - this.half));
    const last = Math.min(this.received - 1, Math.floor(time + this.half));
    let sum = 0;
    let weights = 0;
    for (let index = first; index <= last; index += 1) {
      const weight = this.kernel(time - index);
      sum += weight * this.held[index - this.heldStart];
      weights += weight;
    }
    return weights ? sum / weights : 0;
  }

  kernel(distance) {
    const x = 2 * this.cutoff * distance;
    const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
    const phase = Math.PI * distance / this.half;
    return sinc * (0.42 + 0.5 * Math.cos(phase) + 0.08 * Math.cos(2 * phase));
  }
}

function pcm16(samples) {
  const pcm = new Int16Array(samples.length);
  for (let index = 0; index < samples.length; index += 1) {
    pcm[index] = Math.round(Math.max(-1, Math.min(1, samples[index])) * 32767);
  }
  return pcm;
}

function wavBlob(pieces, rate) {
  const count = pieces.reduce((total, piece) => total + piece.length, 0);
  const header = new DataView(new ArrayBuffer(44));
  const text = (offset, value) => [...value].forEach((c, i) => header.setUint8(offset + i,
    c.charCodeAt(0)));
  text(0, 'RIFF');
  header.setUint32(4, 36 + 2 * count, true);
  text(8, 'WAVE');
  text(12, 'fmt ');
  header.setUint32(16, 16, true);
  header.setUint16(20, 1, true);
  header.setUint16(22, 1, true);
  header.setUint32(24, rate, true);
  header.setUint32(28, 2 * rate, true);
  header.setUint16(32, 2, true);
  header.setUint16(34, 16, true);
  text(36, 'data');
  header.setUint32(40, 2 * count, true);
  return new Blob([header, ...pieces], {type: 'audio/wav'});
}

function microphoneAdvice(error) {
  switch (error.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'The browser refused this page the microphone. Allow it (the microphone or ' +
        'site-settings icon in the address bar, or the browser\'s site settings for this ' +
        'address), then press Start again; or analyse a recording instead.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No microphone was found. Connect one (or choose it in the system\'s sound ' +
        'settings) and press Start again; or analyse a recording instead.';
    case 'NotReadableError':
    case 'AbortError':
      return 'The microphone could not be opened: another program may be using it. Close it ' +
        'and press Start again.';
    default:
      return `The microphone could not be opened (${error.name}: ${error.message}).`;
  }
}

function streamUrl() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/emotion-stream`;
}

class LiveStream {
  constructor(microphone) {
    this.microphone = microphone;
    this.rate = health.sample_rate;
    this.limitSamples = Math.floor(audioLimit() * this.rate);
    this.outbox = [];
    this.sent = 0;
    this.take = [];
    this.ready = false;
    this.stopping = false;
    this.ended = false;
    this.atLimit = false;
    this.failure = null;
  }

  async open() {
    this.context = new AudioContext();
    await this.context.audioWorklet.addModule(WORKLET_URL);
    await this.context.resume();
    this.resampler = new Resampler(this.context.sampleRate, this.rate);
    this.node = new AudioWorkletNode(this.context, 'capture', {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      channelCount: 1,
      channelCountMode: 'explicit',
      processorOptions: {blockSize: Math.round(BLOCK_SECONDS * this.context.sampleRate)},
    });
    this.node.port.onmessage = (event) => this.onAudio(event.data);
    this.socket = new WebSocket(streamUrl(), streamSubprotocols());
    this.socket.binaryType = 'arraybuffer';
    this.socket.onopen = () => this.socket.send(JSON.stringify({
      type: 'start', format: 'pcm_s16le', sample_rate: this.rate, channels: 1,
    }));
    this.socket.onmessage = (event) => this.onMessage(JSON.parse(event.data));
    this.socket.onclose = (event) => this.onClose(event);
    this.source = this.context.createMediaStreamSource(this.microphone);
    this.source.connect(this.node);
    // Connected to the output so that the graph pulls it; it writes silence.
    this.node.connect(this.context.destination);
  }

  onAudio(data) {
    if (data.flushed) {
      this.queueAudio(this.resampler.flush());
      this.end();
    } else if (!this.ended) {
      this.queueAudio(this.resampler.push(data.samples));
    }
  }

  queueAudio(samples) {
    const room = this.limitSamples - this.sent - this.outbox.reduce(
      (total, item) => total + (typeof item === 'string' ? 0 : item.length), 0);
    const reached = samples.length >= room;
    const pcm = pcm16(reached ? samples.subarray(0, Math.max(0, room)) : samples);
    if (pcm.length) {
      this.take.push(pcm);
      this.post(pcm);
    }
    if (reached && !this.ended) {
      this.atLimit = true;
      this.end();
    }
  }

  post(item) {
    if (this.ready && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(typeof item === 'string' ? item : item.buffer);
      if (typeof item !== 'string') {
        this.sent += item.length;
        elements.liveClock.textContent = `${(this.sent / this.rate).toFixed(1)} s streamed`;
      }
    } else {
      this.outbox.push(item);
    }
  }

  stop() {
    if (!this.stopping) {
      this.stopping = true;
      this.node.port.postMessage('flush');
    }
  }

  end() {
    if (!this.ended) {
      this.ended = true;
      this.stopping = true;
      this.releaseMicrophone();
      this.post(JSON.stringify({type: 'end'}));
      view.take = wavBlob(this.take, this.rate);
      setStatus('Waiting for the summary…');
    }
  }

  onMessage(message) {
    if (message.type === 'ready') {
      this.ready = true;
      view.frameMs = message.frame_ms || DEFAULT_FRAME_MS;
      view.chunkMs = message.chunk_ms || DEFAULT_CHUNK_MS;
      setStatus('Listening: speak now.');
      this.outbox.splice(0).forEach((item) => this.post(item));
    } else if (message.type === 'frame') {
      view.frames.push(message);
      view.duration = Math.max(view.duration, (message.timestamp + view.frameMs) / 1000);
      showQuadrant(message.arousal, message.valence, 'latest frame');
      scheduleDraw();
    } else if (message.type === 'chunk') {
      view.chunks.push(message);
      addChunkRow(message);
      scheduleDraw();
    } else if (message.type === 'summary') {
      view.summary = message;
      view.duration = message.duration;
      view.words = message.words || [];
      showSummary(message);
      scheduleDraw();
    } else if (message.type === 'error') {
      this.failure = serviceMessage(message);
    }
  }

  onClose(event) {
    this.releaseMicrophone();
    live = null;
    setRunning(false);
    if (view.take) {
      elements.takeLink.href = URL.createObjectURL(view.take);
      elements.take.hidden = false;
    }
    const meaning = CLOSE_MEANINGS[event.code];
    if (this.failure) {
      showMessage(`The service ended the stream: ${this.failure}` +
        (meaning ? ` (${meaning}).` : ''));
      setStatus('');
    } else if (view.summary) {
      setStatus(this.atLimit ? `Stopped at ${audioLimit()} s, the longest audio the service takes.`
        : view.summary.closed ? `The service closed the stream: ${view.summary.closed}.` : 'Done.');
    } else if (!this.ready) {
      const cause = health && health.api_key_required
        ? 'the service wants its API key: is the one above right?' : 'is serve.py running?';
      showMessage(`The stream could not be opened (code ${event.code}): ${cause}`);
      setStatus('');
    } else {
      showMessage(`The connection to the service was lost (code ${event.code}` +
        (meaning ? `: ${meaning}` : '') + ') before the summary.');
      setStatus('');
    }
  }

  abort() {
    this.releaseMicrophone();
    if (this.socket) {
      this.socket.close();
    }
  }

  releaseMicrophone() {
    this.microphone.getTracks().forEach((track) => track.stop());
    if (this.context && this.context.state !== 'closed') {
      this.context.close();
    }
  }
}

async function startLive() {
  clearMessage();
  if (!health && !await loadHealth()) {
    return;
  }
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showMessage(INSECURE_ADVICE);
    return;
  }
  let microphone;
  try {
    microphone = await navigator.mediaDevices.getUserMedia({audio: {
      channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false,
    }});
  } catch (error) {
    showMessage(microphoneAdvice(error));
    return;
  }
  resetView('live');
  elements.take.hidden = true;
  setRunning(true);
  setStatus('Connecting…');
  live = new LiveStream(microphone);
  try {
    await live.open();
  } catch (error) {
    live.abort();
    live = null;
    setRunning(false);
    showMessage(`The microphone's audio could not be captured: ${error.message}`);
  }
}

function setRunning(running) {
  elements.start.disabled = running;
  elements.stop.disabled = !running;
  elements.analyse.disabled = running || !chosenFile;
}

// ---------------------------------------------------------------------------
// A recording: posted whole, with its transcript
// ---------------------------------------------------------------------------
function chooseFile(file) {
  chosenFile = file || null;
  elements.fileName.textContent = chosenFile ? `${chosenFile.name} (${(chosenFile.size / 1024)
    .toFixed(0)} KiB)` : 'Drop an audio file here, or choose one';
  elements.analyse.disabled = !chosenFile || Boolean(live);
}

async function fileSeconds(file) {
  try {
    const context = new OfflineAudioContext(1, 1, 44100);
    return (await context.decodeAudioData(await file.arrayBuffer())).duration;
  } catch (error) {
    return null;    // a container the browser does not decode: the service will say
  }
}

function dataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new PageError(`The file could not be read: ${reader.error}`));
    reader.readAsDataURL(file);
  });
}

async function analyseFile() {
  clearMessage();
  if (!chosenFile || (!health && !await loadHealth())) {
    return;
  }
  const file = chosenFile;
  elements.analyse.disabled = true;
  try {
    const seconds = await fileSeconds(file);
    if (seconds !== null && seconds > audioLimit()) {
      throw new PageError(`${file.name} lasts ${seconds.toFixed(1)} s; the service takes at ` +
        `most ${audioLimit()} s. Analyse a shorter part of it.`);
    }
    setStatus(`Analysing ${file.name}…`);
    const request = {audio: await dataUrl(file), timeline: true};
    const transcript = elements.transcript.value.trim();
    if (transcript) {
      request.transcript = transcript;
    }
    const answer = await callService('/emotion-recognition', {
      method: 'POST',
      headers: {'Content-Type': 'application/json', ...keyHeaders()},
      body: JSON.stringify(request),
    }, `The service refused ${file.name}`);
    resetView('file');
    const timeline = answer.timeline || [];
    view.frameMs = timeline.length > 1 ? timeline[1].timestamp - timeline[0].timestamp
      : DEFAULT_FRAME_MS;
    view.frames = timeline;
    view.chunks = answer.chunks;
    view.words = answer.words || [];
    view.duration = answer.duration;
    view.summary = answer;
    answer.chunks.forEach(addChunkRow);
    showSummary(answer);
    scheduleDraw();
    setStatus(`${file.name}: done.`);
  } catch (error) {
    showMessage(error.message);
    setStatus('');
  } finally {
    elements.analyse.disabled = !chosenFile || Boolean(live);
  }
}

// ---------------------------------------------------------------------------
// What is shown
// ---------------------------------------------------------------------------
function resetView(mode) {
  Object.assign(view, {mode, frames: [], chunks: [], words: [], duration: 0, summary: null,
    take: null, frameMs: DEFAULT_FRAME_MS, chunkMs: DEFAULT_CHUNK_MS});
  elements.chunkRows.textContent = '';
  elements.summary.textContent = '';
  elements.words.textContent = '';
  elements.quadrant.textContent = 'no values yet';
  elements.liveClock.textContent = '';
  drawPlane(null);
  scheduleDraw();
}

function showMessage(text) {
  elements.message.textContent = text;
  elements.message.hidden = false;
}

function clearMessage() {
  elements.message.hidden = true;
  elements.message.textContent = '';
}

function setStatus(text) {
  elements.status.textContent = text;
}

function signed(value) {
  return `${value >= 0 ? '+' : '−'}${Math.abs(value).toFixed(2)}`;
}

function addChunkRow(chunk) {
  const row = document.createElement('tr');
  row.dataset.emotion = chunk.emotion;
  [`${chunk.start.toFixed(1)} s`, `${chunk.end.toFixed(1)} s`, signed(chunk.arousal),
    signed(chunk.valence), chunk.emotion].forEach((text) => {
    const cell = document.createElement('td');
    cell.textContent = text;
    row.appendChild(cell);
  });
  elements.chunkRows.appendChild(row);
}

function showSummary(summary) {
  const entries = [
    ['emotion', summary.emotion],
    ['arousal', signed(summary.arousal)],
    ['valence', signed(summary.valence)],
    ['thayers', summary.thayers],
    ['duration', `${summary.duration.toFixed(2)} s`],
    ['chunks', summary.chunks.map((chunk) => chunk.emotion).join(', ')],
    ['text branch heard', TEXT_SOURCES[summary.text] || summary.text],
    ['model', `step ${summary.model.step}, ${summary.model.modality}`],
  ];
  if (summary.closed) {
    entries.push(['closed', summary.closed]);
  }
  if (summary.alignment) {
    entries.push(['alignment', summary.alignment]);
  }
  elements.summary.textContent = '';
  for (const [name, value] of entries) {
    const term = document.createElement('dt');
    term.textContent = name;
    const detail = document.createElement('dd');
    detail.textContent = value;
    detail.dataset.field = name;
    if (name === 'emotion') {
      detail.className = 'emotion';
    }
    elements.summary.append(term, detail);
  }
  const words = summary.words || [];
  elements.words.textContent = words.length ? `${words.length} words: ${words.map((w) => w.word)
    .join(' ')}` : '';
  showQuadrant(summary.arousal, summary.valence, 'the utterance\'s mean, its "thayers"');
}

function quadrant(arousal, valence) {
  return QUADRANTS[`${arousal >= 0 ? 'high' : 'low'},${valence >= 0 ? 'positive' : 'negative'}`];
}

function showQuadrant(arousal, valence, what) {
  elements.quadrant.textContent = `${quadrant(arousal, valence)} (arousal ${signed(arousal)}, ` +
    `valence ${signed(valence)}: ${what})`;
  drawPlane({arousal, valence});
}

function scheduleDraw() {
  if (!drawPending) {
    drawPending = true;
    requestAnimationFrame(() => {
      drawPending = false;
      drawChart();
    });
  }
}

function prepare(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const context = canvas.getContext('2d');
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  context.clearRect(0, 0, width, height);
  return {context, width, height};
}

function tickStep(span) {
  return [0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600].find((step) => span / step <= 12) ||
    Math.ceil(span / 12);
}

function drawChart() {
  const {context: g, width, height} = prepare(elements.chart);
  const box = {left: 56, right: width - 12, top: 22, bottom: height - 42};
  const frameSeconds = view.frameMs / 1000;
  const chunkSeconds = view.chunkMs / 1000;
  const end = Math.max(view.duration, ...view.frames.map((f) => f.timestamp / 1000 + frameSeconds));
  const span = view.mode === 'live' ? Math.max(chunkSeconds, Math.ceil(end / chunkSeconds) *
    chunkSeconds) : Math.max(end, frameSeconds);
  const x = (seconds) => box.left + (box.right - box.left) * seconds / span;
  const y = (value) => box.top + (box.bottom - box.top) * (Y_LIMIT - value) / (2 * Y_LIMIT);

  g.font = '12px system-ui, sans-serif';
  g.fillStyle = '#222';
  g.strokeStyle = '#222';
  g.lineWidth = 1;
  g.strokeRect(box.left, box.top, box.right - box.left, box.bottom - box.top);
  g.textAlign = 'center';
  g.textBaseline = 'top';
  const step = tickStep(span);
  for (let tick = 0; tick <= span + 1e-9; tick += step) {
    g.beginPath();
    g.moveTo(x(tick), box.bottom);
    g.lineTo(x(tick), box.bottom + 4);
    g.stroke();
    g.fillText(String(Number(tick.toFixed(2))), x(tick), box.bottom + 6);
  }
  g.fillText('time (s)', (box.left + box.right) / 2, box.bottom + 24);
  g.textAlign = 'right';
  g.textBaseline = 'middle';
  for (const tick of [-1, -0.5, 0, 0.5, 1]) {
    g.beginPath();
    g.moveTo(box.left - 4, y(tick));
    g.lineTo(box.left, y(tick));
    g.stroke();
    g.fillText(tick.toFixed(1), box.left - 6, y(tick));
  }
  g.save();
  g.translate(14, (box.top + box.bottom) / 2);
  g.rotate(-Math.PI / 2);
  g.textAlign = 'center';
  g.fillText('prediction', 0, 0);
  g.restore();

  g.save();
  g.beginPath();
  g.rect(box.left, box.top, box.right - box.left, box.bottom - box.top);
  g.clip();
  g.strokeStyle = 'grey';
  g.lineWidth = 0.5;
  g.beginPath();
  g.moveTo(box.left, y(0));
  g.lineTo(box.right, y(0));
  g.stroke();
  drawWords(g, x, y);
  drawChunks(g, x, y);
  for (const dimension of DIMENSIONS) {
    g.strokeStyle = COLOURS[dimension];
    g.lineWidth = 1.5;
    g.beginPath();
    view.frames.forEach((frame, index) => {
      const start = frame.timestamp / 1000;
      const value = frame[dimension];
      if (index === 0) {
        g.moveTo(x(start), y(value));
      } else {
        g.lineTo(x(start), y(value));
      }
      g.lineTo(x(start + frameSeconds), y(value));
    });
    g.stroke();
  }
  g.restore();
  drawChunkLabels(g, x, box);
  drawLegend(g, box);
}

function drawWords(g, x, y) {
  if (!view.words.length || view.words.length > MAX_PLOT_WORDS) {
    return;
  }
  g.font = '10px system-ui, sans-serif';
  g.textAlign = 'right';
  g.textBaseline = 'middle';
  for (const word of view.words) {
    g.fillStyle = 'rgba(128, 128, 128, 0.08)';
    g.fillRect(x(word.start), y(Y_LIMIT), x(word.end) - x(word.start), y(-Y_LIMIT) - y(Y_LIMIT));
    g.save();
    g.translate(x((word.start + word.end) / 2), y(1.0));
    g.rotate(-Math.PI / 2);
    g.fillStyle = 'dimgrey';
    g.fillText(word.word, 0, 0);
    g.restore();
  }
}

function drawChunks(g, x, y) {
  g.setLineDash([3, 3]);
  g.strokeStyle = '#999';
  g.lineWidth = 1;
  view.chunks.forEach((chunk, index) => {
    if (!view.summary || index < view.chunks.length - 1) {
      g.beginPath();
      g.moveTo(x(chunk.end), y(Y_LIMIT));
      g.lineTo(x(chunk.end), y(-Y_LIMIT));
      g.stroke();
    }
  });
  g.setLineDash([]);
}

// Each chunk's label above its stretch of the plot, where no curve reaches.
function drawChunkLabels(g, x, box) {
  g.font = '600 12px system-ui, sans-serif';
  g.textAlign = 'center';
  g.textBaseline = 'bottom';
  g.fillStyle = '#333';
  for (const chunk of view.chunks) {
    const width = x(chunk.end) - x(chunk.start);
    if (g.measureText(chunk.emotion).width <= width) {
      g.fillText(chunk.emotion, (x(chunk.start) + x(chunk.end)) / 2, box.top - 4);
    }
  }
}

// In the margin under the plot, right: the curves keep the whole plot.
function drawLegend(g, box) {
  g.font = '12px system-ui, sans-serif';
  g.textAlign = 'left';
  g.textBaseline = 'middle';
  const middle = box.bottom + 30;
  let left = box.right - 180;
  for (const dimension of DIMENSIONS) {
    g.strokeStyle = COLOURS[dimension];
    g.lineWidth = 1.5;
    g.beginPath();
    g.moveTo(left, middle);
    g.lineTo(left + 24, middle);
    g.stroke();
    g.fillStyle = '#222';
    g.fillText(dimension, left + 30, middle);
    left += 90;
  }
}

function drawPlane(point) {
  const {context: g, width, height} = prepare(elements.plane);
  const margin = 18;
  const size = Math.min(width, height) - 2 * margin;
  const x = (valence) => margin + size * (valence + 1) / 2;
  const y = (arousal) => margin + size * (1 - arousal) / 2;
  g.strokeStyle = '#999';
  g.lineWidth = 1;
  g.strokeRect(margin, margin, size, size);
  g.beginPath();
  g.moveTo(x(0), y(1));
  g.lineTo(x(0), y(-1));
  g.moveTo(x(-1), y(0));
  g.lineTo(x(1), y(0));
  g.stroke();
  g.font = '10px system-ui, sans-serif';
  g.fillStyle = '#888';
  g.textBaseline = 'top';
  g.textAlign = 'left';
  g.fillText('anxiety', x(-1) + 3, y(1) + 3);
  g.fillText('depression', x(-1) + 3, y(0) + 3);
  g.textAlign = 'right';
  g.fillText('exuberance', x(1) - 3, y(1) + 3);
  g.fillText('contentment', x(1) - 3, y(0) + 3);
  g.textAlign = 'center';
  g.fillStyle = '#444';
  g.fillText('valence', x(0), y(-1) + 3);
  g.save();
  g.translate(margin - 14, y(0));
  g.rotate(-Math.PI / 2);
  g.fillText('arousal', 0, 0);
  g.restore();
  if (!point) {
    return;
  }
  const clamp = (value) => Math.max(-1, Math.min(1, value));
  if (view.mode === 'live' && !view.summary) {
    view.frames.slice(-TRAIL_FRAMES).forEach((frame, index, trail) => {
      g.fillStyle = `rgba(31, 119, 180, ${0.1 + 0.4 * index / trail.length})`;
      g.beginPath();
      g.arc(x(clamp(frame.valence)), y(clamp(frame.arousal)), 3, 0, 2 * Math.PI);
      g.fill();
    });
  }
  g.fillStyle = '#d62728';
  g.beginPath();
  g.arc(x(clamp(point.valence)), y(clamp(point.arousal)), 6, 0, 2 * Math.PI);
  g.fill();
}

// ---------------------------------------------------------------------------
// Wiring
// ---------------------------------------------------------------------------
function wire() {
  for (const [name, id] of Object.entries({
    model: 'model', keyRow: 'key-row', apiKey: 'api-key', start: 'start', stop: 'stop',
    liveClock: 'live-clock',
    textBranch: 'text-branch', take: 'take', takeLink: 'take-link', drop: 'drop',
    file: 'file', fileName: 'file-name', transcript: 'transcript', analyse: 'analyse',
    message: 'message', status: 'status', chart: 'chart', plane: 'plane',
    quadrant: 'quadrant', chunkRows: 'chunk-rows', summary: 'summary', words: 'words',
  })) {
    elements[name] = document.getElementById(id);
  }
  elements.start.addEventListener('click', startLive);
  elements.stop.addEventListener('click', () => live && live.stop());
  elements.file.addEventListener('change', () => chooseFile(elements.file.files[0]));
  elements.analyse.addEventListener('click', analyseFile);
  elements.drop.addEventListener('dragover', (event) => {
    event.preventDefault();
    elements.drop.classList.add('over');
  });
  elements.drop.addEventListener('dragleave', () => elements.drop.classList.remove('over'));
  elements.drop.addEventListener('drop', (event) => {
    event.preventDefault();
    elements.drop.classList.remove('over');
    chooseFile(event.dataTransfer.files[0]);
  });
  window.addEventListener('resize', scheduleDraw);
  window.emotionPage = {view, health: () => health};
  drawPlane(null);
  scheduleDraw();
  loadHealth();
}

document.addEventListener('DOMContentLoaded', wire);
