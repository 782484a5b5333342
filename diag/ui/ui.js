// The technician page: polls /api/v1/status every second and shows it;
// runs the self-test and the camera's noise measurement. Text only goes
// in through textContent, never as markup. Numbers and states only: the daemon serves no image.
'use strict';

const byId = (id) => document.getElementById(id);
const set = (id, text, cls) => {
  const el = byId(id);
  el.textContent = text;
  el.className = cls || '';
};
const counts = (m) => {
  const parts = Object.keys(m || {}).sort().filter((k) => m[k] > 0).map((k) => k + ' ' + m[k]);
  return parts.length ? parts.join(' · ') : 'none';
};
const duration = (s) => {
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return (d ? d + ' d ' : '') + (d || h ? h + ' h ' : '') + m + ' min ' + (s % 60) + ' s';
};

function render(st) {
  set('state', st.state || 'unknown', st.state === 'stopped' ? 'bad' : '');
  if (st.degraded && st.degraded.length) {
    set('health', 'degraded: ' + st.degraded.join('; '), 'bad');
  } else if (st.locked_until) {
    set('health', 'locked after repeated attacks until ' + new Date(st.locked_until).toLocaleTimeString(), 'warn');
  } else {
    set('health', 'ok', 'ok');
  }
  set('version', st.version);
  set('uptime', duration(st.uptime_seconds));
  const cam = st.camera;
  set('camera', cam ? cam.format + ', ' + cam.frames_total + ' frames, ' + cam.reopens_total + ' reopens' : 'none');
  if (cam) {
    // Between presentations the terminal takes a frame now and then;
    // only a capture runs the camera at its full rate.
    const low = st.state === 'capture' && cam.measured_fps < 0.8 * cam.configured_fps;
    set('fps', cam.measured_fps.toFixed(1) + ' fps taken (camera set to ' + cam.configured_fps + ' fps)', low ? 'warn' : '');
  } else {
    set('fps', '–');
  }
  const il = st.illuminator;
  set('illuminator', il ? (il.on ? 'on' : 'off') + ', level ' + il.level_percent + ' %, duty ' +
    (100 * il.duty_ratio).toFixed(1) + ' % of ' + (100 * il.max_duty_ratio).toFixed(0) + ' % allowed, ' +
    il.on_seconds_total + ' s on in all, ' + il.cutoffs_total + ' safety cut-offs' : 'none',
  il && il.cutoffs_total > 0 ? 'warn' : '');
  const b = st.broker;
  set('broker', b ? (b.connected ? 'connected' : 'NOT connected') + ', ' + b.reconnects_total + ' reconnects, outbox ' +
    b.outbox_captures + ' captures (' + b.outbox_bytes + ' bytes)' : 'none', b && !b.connected ? 'bad' : (b ? 'ok' : ''));
  set('captures', b ? b.captures_submitted_total + ' sent, ' + b.captures_delivered_total + ' delivered, ' +
    b.captures_answered_total + ' answered, ' + b.captures_expired_total + ' expired; ' + b.commands_total +
    ' commands (' + b.commands_refused_total + ' refused)' : '–');
  set('outcomes', counts(st.presentations_total));
  set('attacks', counts(st.attacks_refused_total));
  set('lasterror', st.last_error || 'none', st.last_error ? 'warn' : '');
  renderRecent(st.recent || []);
  renderChart(st.recent || []);
}

function renderRecent(recent) {
  const body = byId('recent-rows');
  body.replaceChildren();
  if (!recent.length) {
    const tr = body.insertRow();
    const td = tr.insertCell();
    td.colSpan = 7;
    td.textContent = 'none yet';
    return;
  }
  for (const p of recent.slice().reverse()) {
    const tr = body.insertRow();
    tr.className = 'presentation';
    const cells = [
      new Date(p.at).toLocaleTimeString(),
      p.outcome + (p.attack_cue ? ' (' + p.attack_cue + ')' : ''),
      p.quality_percent + ' %',
      counts(p.gate_failures),
      p.in_view_to_result_ms + ' ms',
      p.still_to_result_ms + ' ms',
      p.liveness_score.toFixed(2),
    ];
    for (const c of cells) {
      tr.insertCell().textContent = c;
    }
    const good = p.outcome === 'match' || p.outcome === 'enrolled';
    tr.cells[1].className = good ? 'ok' : 'bad';
  }
}

// renderChart draws the in-view-to-result latency (line, left axis, ms)
// and the quality (dots, right axis, %) of the recent presentations.
function renderChart(recent) {
  const svg = byId('chart');
  const ns = 'http://www.w3.org/2000/svg';
  const W = 640, H = 170, L = 48, R = 40, T = 10, B = 24;
  const el = (name, attrs, text) => {
    const e = document.createElementNS(ns, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e);
    return e;
  };
  svg.replaceChildren();
  el('rect', {x: L, y: T, width: W - L - R, height: H - T - B, fill: 'none', stroke: '#ccc'});
  if (!recent.length) {
    el('text', {x: L + 10, y: H / 2}, 'no presentations yet');
    return;
  }
  const maxMS = Math.max(1000, ...recent.map((p) => p.in_view_to_result_ms));
  const x = (i) => L + (recent.length === 1 ? (W - L - R) / 2 : i * (W - L - R) / (recent.length - 1));
  const yMS = (ms) => T + (H - T - B) * (1 - ms / maxMS);
  const yQ = (q) => T + (H - T - B) * (1 - q / 100);
  el('text', {x: 2, y: T + 10}, maxMS + ' ms');
  el('text', {x: 2, y: H - B}, '0 ms');
  el('text', {x: W - R + 4, y: T + 10}, '100 %');
  el('text', {x: W - R + 4, y: H - B}, '0 %');
  el('text', {x: L, y: H - 6}, 'in view → result (line, ms) · quality (dots, %) · oldest left');
  el('polyline', {points: recent.map((p, i) => x(i) + ',' + yMS(p.in_view_to_result_ms)).join(' '),
    fill: 'none', stroke: '#1f5fbf', 'stroke-width': 2, class: 'latency'});
  recent.forEach((p, i) => el('circle', {cx: x(i), cy: yQ(p.quality_percent), r: 3, fill: '#b35c00', class: 'quality'}));
}

async function refresh() {
  try {
    const r = await fetch('/api/v1/status', {cache: 'no-store', credentials: 'same-origin'});
    if (!r.ok) {
      throw new Error('status answered ' + r.status);
    }
    render(await r.json());
    set('link', 'live · updated ' + new Date().toLocaleTimeString());
  } catch (e) {
    set('link', 'not updating: ' + e.message, 'bad');
  }
}

// action runs one of the terminal's between-presentation jobs (a POST
// without a body) from its button and shows describe's text of the answer.
async function action(buttonId, resultId, url, describe) {
  const button = byId(buttonId);
  button.disabled = true;
  set(resultId, 'running…');
  try {
    const r = await fetch(url, {method: 'POST', cache: 'no-store', credentials: 'same-origin'});
    const res = await r.json();
    if (!r.ok) {
      throw new Error(res.error || 'answered ' + r.status);
    }
    set(resultId, describe(res), res.passed ? 'ok' : 'bad');
  } catch (e) {
    set(resultId, 'could not run: ' + e.message, 'bad');
  } finally {
    button.disabled = false;
  }
}

function selfTestText(res) {
  let text = (res.passed ? 'passed' : 'FAILED') + ': illuminator adds ' + res.illuminator_delta_grey.toFixed(1) +
    ' grey levels, ' + res.measured_fps.toFixed(1) + ' fps, focus ' + res.focus.toFixed(3);
  if (res.broker_error) {
    text += ', broker: ' + res.broker_error;
  } else if (res.broker_round_trip_ms !== undefined) {
    text += ', broker round trip ' + res.broker_round_trip_ms.toFixed(1) + ' ms';
  }
  if (res.problems && res.problems.length) {
    text += ' — ' + res.problems.join('; ');
  }
  return text;
}

function cameraNoiseText(res) {
  if (!res.passed) {
    return 'FAILED: ' + res.problem;
  }
  return 'measured over grey ' + res.min_grey.toFixed(0) + '–' + res.max_grey.toFixed(0) + ' at gain ' + res.gain +
    ': for palmd.yaml, liveness: {noise: {read: ' + res.read_grey + ', shot: ' + res.shot + ', corr: ' + res.corr_px + '}}';
}

byId('selftest').addEventListener('click', () => action('selftest', 'selftest-result', '/api/v1/selftest', selfTestText));
byId('noise').addEventListener('click', () => action('noise', 'noise-result', '/api/v1/camera-noise', cameraNoiseText));
refresh();
setInterval(refresh, 1000);
