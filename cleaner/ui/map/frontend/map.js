// cleaner's map: a frameless Streamlit component (components v2) drawing the 3D or 2D map with plotly.js.
// This module is the lifecycle: the element's mount, the drawing queue, the hand-over from the colours and marks
// elements, resize and unmount. The other modules: style.js (CSS), plotly_internals.js (everything that reads
// plotly's private state), decode.js (the binary messages), figure.js (traces and layout), marks.js (selection
// and × drawn over the map), tools.js (clicks, box, lasso, zoom).
//
// The map element ("cleaner.map") gets the points (16-bit coordinates); "cleaner.mapcolours" (colours_element.js)
// the class codes, scores and palette; "cleaner.mapmarks" (marks_element.js) the selected and excluded rows. Each
// hands its data over through MAPS, by map key, so a recolouring sends no coordinates and a selection neither
// redraws plotly's scene nor sends the points again. window.Plotly: imported from vendor/plotly.min.js beside this
// module when the points message names that file (the scripts are served as files), else set by the
// "cleaner.plotlyjs" element (the scripts went inline; component.py says when).

import { ensureStyle } from "./style.js";
import { purgePlot, readCamera, resizePlot, whenPlotly } from "./plotly_internals.js";
import { decodeColours, decodePoints } from "./decode.js";
import { buildFigure } from "./figure.js";
import { MINE, THEIRS, drawMarks, markKey } from "./marks.js";
import { cancelShape, clampZoom, clearOutline, hiddenClasses, installTools, setTool } from "./tools.js";

// Camera, axis ranges, hidden legend entries, tool per component key: they outlive a remount of the element
// (the map hidden and shown again) for as long as the page lives.
const VIEWS = new Map();
// Map key → {state, colours, marks, applyColours, apply}: how the colours and marks elements find their map.
const MAPS = window.__cleanerMaps || (window.__cleanerMaps = new Map());
const RESIZE_MIN_PX = 24;

function createMap(parentElement, key) {
  ensureStyle();
  const root = document.createElement("div");
  root.className = "cleaner-map";
  root.dataset.draws = "0";
  root.innerHTML = `
    <div class="cleaner-map-toolbar" role="toolbar" aria-label="Map tools">
      <button type="button" data-tool="pan" aria-pressed="true" title="Drag to rotate (3D) or pan (2D)">Move</button>
      <button type="button" data-tool="box" aria-pressed="false" title="Drag a box: the points inside are selected">Box</button>
      <button type="button" data-tool="lasso" aria-pressed="false" title="Draw a lasso: the points inside are selected">Lasso</button>
      <label class="cleaner-map-hint"><input type="checkbox" data-show="excluded" checked> × excluded</label>
      <span class="cleaner-map-key" hidden>${markKey(MINE)} by you ${markKey(THEIRS)} by a teammate</span>
      <span class="cleaner-map-hint">Shift adds, Alt removes · Ctrl/⌘ + wheel zooms</span>
    </div>
    <div class="cleaner-map-plot">
      <div class="cleaner-map-gd"></div>
      <canvas class="cleaner-map-marks"></canvas>
      <svg class="cleaner-map-overlay"><path d=""></path></svg>
      <div class="cleaner-map-message">Loading the map…</div>
    </div>`;
  parentElement.appendChild(root);
  const saved = VIEWS.get(key) || {};
  const state = {
    key, root, tool: "pan", figure: null, meta: null, setTriggerValue: null, height: 600,
    gd: root.querySelector(".cleaner-map-gd"), plot: root.querySelector(".cleaner-map-plot"),
    overlay: root.querySelector(".cleaner-map-overlay"), path: root.querySelector(".cleaner-map-overlay path"),
    message: root.querySelector(".cleaner-map-message"), marksCanvas: root.querySelector(".cleaner-map-marks"),
    marks: { selected: new Int32Array(0), excluded: new Int32Array(0), teamExcluded: new Int32Array(0), team: false },
    marksFrame: 0,
    camera: saved.camera || null, hidden: new Set(saved.hidden || []), savedDims: saved.dims || null,
    points: null, colours: null, pointsRaw: null, coloursRaw: null, drawWanted: false, drawing: false,
    disposed: false, press: null, outlineTimer: 0, listeners: [],
  };
  const listen = (target, type, fn, opts) => {
    target.addEventListener(type, fn, opts);
    state.listeners.push(() => target.removeEventListener(type, fn, opts));
  };
  installTools(state, listen, remember);
  const showExcluded = root.querySelector("input[data-show=excluded]");
  showExcluded.checked = saved.showExcluded !== false;
  state.showExcluded = showExcluded.checked;
  listen(showExcluded, "change", () => { state.showExcluded = showExcluded.checked; remember(state); redrawMarks(state); });
  if (saved.tool && saved.tool !== "pan") setTool(state, saved.tool, remember); // a remount keeps the tool
  const resize = new ResizeObserver(() => {
    if (state.disposed || !state.figure) return;
    // plotly sizes its canvas to the element only when told; a change smaller than RESIZE_MIN_PX (a scrollbar
    // coming and going as the page below grows) is left alone: it would redraw every point, seconds at 1M in
    // software GL, and the drawing area read for shapes and marks is the canvas as it is either way
    const w = state.plot.clientWidth, h = state.plot.clientHeight, last = state.sizedAt || [0, 0];
    if (Math.abs(w - last[0]) >= RESIZE_MIN_PX || Math.abs(h - last[1]) >= RESIZE_MIN_PX) {
      state.sizedAt = [w, h];
      resizePlot(state.gd);
    }
    scheduleMarks(state);
  });
  resize.observe(state.plot);
  state.listeners.push(() => resize.disconnect());
  const entry = MAPS.get(key) || {};
  entry.state = state;
  entry.apply = (marks) => setMarks(state, marks);
  entry.applyColours = (raw) => setColours(state, raw);
  MAPS.set(key, entry);
  if (entry.marks) state.marks = entry.marks;
  if (entry.colours) setColours(state, entry.colours, false);
  return state;
}

function remember(state) {
  const saved = VIEWS.get(state.key) || {};
  if (state.figure && state.gd._fullLayout) {
    const hidden = [];
    (state.gd.data || []).forEach((t) => {
      if (t.visible === "legendonly" && t.uid && t.uid[0] === "n") hidden.push(`g${t.uid.slice(1)}`);
    });
    state.hidden = new Set(hidden);
    state.camera = readCamera(state.gd, state.figure.dims);
    Object.assign(saved, { camera: state.camera, hidden, dims: state.figure.dims });
  }
  VIEWS.set(state.key, { ...saved, showExcluded: state.showExcluded, tool: state.tool });
}

// ------------------------------------------------------------------ marks and colours handed over

function setMarks(state, marks) {
  if (state.disposed) return;
  state.marks = marks;
  clearOutline(state); // the shape drawn has done its work: its rows are highlighted now
  state.root.dataset.selected = String(marks.selected.length);
  state.root.dataset.excluded = String(marks.excluded.length);
  state.root.dataset.teamExcluded = String(marks.teamExcluded ? marks.teamExcluded.length : 0);
  state.root.querySelector(".cleaner-map-key").hidden = !marks.team; // the legend of the two marks, in team mode
  redrawMarks(state);
  state.root.dataset.marks = String(Number(state.root.dataset.marks || 0) + 1);
  window.__cleanerMapMarkedAt = Date.now(); // read by bench/map_draw.py
}

function redrawMarks(state) {
  if (!state.disposed) drawMarks(state, hiddenClasses(state));
}

function scheduleMarks(state) {
  if (state.marksFrame || state.disposed) return;
  state.marksFrame = requestAnimationFrame(() => { state.marksFrame = 0; redrawMarks(state); });
}

function setColours(state, raw, draw = true) {
  if (state.disposed || raw === state.coloursRaw) return;
  state.coloursRaw = raw;
  state.colours = decodeColours(raw);
  if (draw) requestDraw(state);
}

// ------------------------------------------------------------------ drawing: the latest points and colours only

function requestDraw(state) {
  state.drawWanted = true;
  if (state.drawing) return; // the running loop picks the newest data up when its draw is done
  state.drawing = true;
  (async () => {
    try {
      while (state.drawWanted && !state.disposed) {
        state.drawWanted = false;
        const points = state.points, colours = state.colours;
        if (!points || !colours || colours.meta.n !== points.n) break; // the other half is on its way
        await render(state, points, colours);
      }
    } catch (err) {
      if (!state.disposed) {
        state.message.style.display = "flex";
        state.message.textContent = `The map could not be drawn: ${err && err.message ? err.message : err}`;
      }
      console.error(err);
    } finally {
      state.drawing = false;
    }
  })();
}

const nextFrames = () => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));

async function render(state, points, colours) {
  const Plotly = await whenPlotly(points.plotly);
  if (state.disposed) return;
  const started = performance.now();
  if (state.figure) remember(state);
  if (state.figure && state.figure.dims !== points.dims) {
    state.camera = null; // a 2D range means nothing to a 3D camera and back
    purgePlot(Plotly, state.gd);
    state.figure = null;
  } else if (!state.figure && state.savedDims !== points.dims) {
    state.camera = null;
  }
  state.meta = colours.meta;
  state.plot.style.height = `${state.height}px`;
  const fig = buildFigure(points, colours, state);
  const config = {
    scrollZoom: false, displaylogo: false, responsive: true, doubleClick: "reset+autosize",
    modeBarButtonsToRemove: ["select2d", "lasso2d", "toImage"],
  };
  const fresh = !state.figure;
  await Plotly.react(state.gd, fig.traces, fig.layout, config);
  if (state.disposed) { purgePlot(Plotly, state.gd); return; } // unmounted while plotly drew: free its WebGL context
  state.figure = fig;
  state.sizedAt = [state.plot.clientWidth, state.plot.clientHeight];
  if (fresh) {
    state.gd.on("plotly_relayout", () => { remember(state); clampZoom(state); scheduleMarks(state); });
    state.gd.on("plotly_relayouting", () => scheduleMarks(state));
    state.gd.on("plotly_restyle", () => { remember(state); scheduleMarks(state); });
    state.gd.on("plotly_legendclick", () => { setTimeout(() => { remember(state); scheduleMarks(state); }, 0); });
  }
  await nextFrames();
  if (state.disposed) return;
  remember(state);
  if (fresh) setMarks(state, state.marks); // marks that arrived before the map was drawn
  else redrawMarks(state);
  state.message.style.display = "none";
  state.root.dataset.draws = String(Number(state.root.dataset.draws) + 1);
  state.root.dataset.points = String(points.n);
  state.root.dataset.dims = String(points.dims);
  // read by bench/map_draw.py and the browser tests
  window.__cleanerMapDrawn = { key: state.key, n: points.n, at: Date.now(), ms: performance.now() - started };
}

function dispose(state, parentElement) {
  state.disposed = true;
  clearTimeout(state.resendTimer);
  remember(state);
  cancelShape(state);
  if (state.marksFrame) cancelAnimationFrame(state.marksFrame);
  state.listeners.forEach((off) => off());
  const entry = MAPS.get(state.key);
  if (entry && entry.state === state) { entry.state = null; entry.apply = null; entry.applyColours = null; }
  if (window.Plotly) purgePlot(window.Plotly, state.gd);
  state.root.remove();
  if (parentElement.__cleanerMap === state) parentElement.__cleanerMap = undefined;
}

// Points messages by map key, the newest per key for the latest HELD_KEYS keys, for the page's life: a rerun that
// changes nothing on the map sends a reference ({key, ref}) to the message the browser was handed, and a remount
// (the map hidden and shown, the 3D and 2D views swapped) finds the message here instead of asking for it again.
const HELD = window.__cleanerMapPoints || (window.__cleanerMapPoints = new Map());
const HELD_KEYS = 2;

const isBinary = (data) => data instanceof ArrayBuffer || ArrayBuffer.isView(data);

function hold(key, raw, points) {
  HELD.delete(key);
  HELD.set(key, { raw, points });
  while (HELD.size > HELD_KEYS) HELD.delete(HELD.keys().next().value);
}

function takePoints(state, raw, points) {
  if (raw === state.pointsRaw) return; // the same message again draws nothing new
  state.pointsRaw = raw;
  state.height = Number(points.height) || 600;
  state.points = points;
  requestDraw(state);
}

const RESEND_RETRY_MS = 3000;
const RESEND_TRIES = 10;

// Ask the server for the whole points message, and again every few seconds until it arrives: a trigger sent while
// another run replaces the current one can be lost, and the server then keeps sending a reference. Each ask carries
// a new value, so it is always a change.
function askForPoints(state, ref, tries = 0) {
  clearTimeout(state.resendTimer);
  if (state.disposed || (state.points && state.points.ref === ref) || tries >= RESEND_TRIES) return;
  state.resendAsks = (state.resendAsks || 0) + 1;
  state.setTriggerValue("resend", `${ref}#${state.resendAsks}`);
  state.resendTimer = setTimeout(() => askForPoints(state, ref, tries + 1), RESEND_RETRY_MS);
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  if (!data) return undefined;
  const existing = parentElement.__cleanerMap;
  let points = null;
  if (isBinary(data)) {
    points = existing && existing.pointsRaw === data ? existing.points : decodePoints(data);
    hold(points.key || "map", data, points);
  }
  const key = points ? points.key || "map" : String(data.key);
  let state = existing;
  if (state && state.key !== key) { dispose(state, parentElement); state = null; }
  if (!state) {
    state = createMap(parentElement, key);
    parentElement.__cleanerMap = state;
  }
  state.setTriggerValue = setTriggerValue;
  if (points) {
    takePoints(state, data, points);
  } else if (!state.points || state.points.ref !== data.ref) {
    const held = HELD.get(key);
    if (held && held.points.ref === data.ref) takePoints(state, held.raw, held.points);
    else askForPoints(state, data.ref); // no copy here (a page reload into the same session): send it whole
  }
  return () => dispose(state, parentElement);
}
