// cleaner's map: a frameless Streamlit component (components v2) drawing the 3D or 2D map with plotly.js.
//
// The map element ("cleaner.map") gets the per-point arrays as Arrow tables (coordinates, class codes, score,
// names) plus a small JSON "meta", and draws them with plotly.js. The marks element ("cleaner.mapmarks",
// map_marks.js) gets the selected and excluded rows and hands them over through MAPS; they are drawn on a
// canvas over the plot (the selection highlighted with the rest dimmed, excluded points as ×), so a new
// selection or exclusion neither redraws plotly's scene (which costs as much as the first draw) nor sends
// the points again (their element is unchanged, and Streamlit sends an unchanged element as a reference).
// The user rotates/zooms/pans as Plotly does, clicks a point, or draws a box or a lasso over the view; a
// drawn shape goes back as its polygon in pixels plus the camera it was drawn through, and Python
// (cleaner/ui/map/payload.py) decides which rows it encloses. window.Plotly comes from the "cleaner.plotlyjs"
// element, which carries the plotly.min.js of the installed plotly wheel.

// Camera, axis ranges and hidden legend entries per component key: they outlive a remount of the element
// (the map hidden and shown again) for as long as the page lives.
const VIEWS = new Map();
// Map key → {state, marks}: how a marks element finds its map (each element's script is its own module).
const MAPS = window.__cleanerMaps || (window.__cleanerMaps = new Map());
const STYLE_ID = "cleaner-map-style";
const MIN_DRAG_PX = 3;
const LASSO_STEP_PX = 2;
const MAX_VERTICES = 1500; // mapdata.MAX_POLYGON_VERTICES is the limit Python accepts
const PLOTLY_WAIT_MS = 60000;

const CSS = `
.cleaner-map { position: relative; font-family: inherit; }
.cleaner-map-toolbar { display: flex; gap: 0.4rem; align-items: center; flex-wrap: wrap; margin-bottom: 0.3rem;
  font-size: 0.85rem; }
.cleaner-map-toolbar button { border: 1px solid rgba(128,128,128,0.45); border-radius: 0.4rem; padding: 0.15rem 0.7rem;
  background: transparent; color: inherit; cursor: pointer; font: inherit; }
.cleaner-map-toolbar button[aria-pressed="true"] { background: rgba(255, 75, 75, 0.14); border-color: rgb(255, 75, 75); }
.cleaner-map-hint { opacity: 0.7; }
.cleaner-map-plot { position: relative; width: 100%; }
.cleaner-map-gd { position: absolute; inset: 0; }
.cleaner-map-overlay { position: absolute; left: 0; top: 0; width: 100%; height: 100%; pointer-events: none; z-index: 5; }
.cleaner-map-overlay.active { pointer-events: auto; cursor: crosshair; }
.cleaner-map-overlay path { fill: rgba(255, 75, 75, 0.08); stroke: rgb(255, 75, 75); stroke-width: 1.5;
  stroke-dasharray: 5 3; }
.cleaner-map-marks { position: absolute; pointer-events: none; z-index: 4; }
.cleaner-map-message { position: absolute; inset: 0; display: flex; align-items: center; justify-content: center;
  opacity: 0.7; pointer-events: none; }
`;

function ensureStyle() {
  if (document.getElementById(STYLE_ID)) return;
  const style = document.createElement("style");
  style.id = STYLE_ID;
  style.textContent = CSS;
  document.head.appendChild(style);
}

function whenPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const poll = () => {
      if (window.Plotly) resolve(window.Plotly);
      else if (performance.now() - started > PLOTLY_WAIT_MS) reject(new Error("plotly.js did not load"));
      else setTimeout(poll, 25);
    };
    poll();
  });
}

// ------------------------------------------------------------------ plotly internals, in one place
// plotly.js has no public API for a 3D scene's projection or a 2D plot area's pixel box; both are needed to
// turn a shape drawn over the view into rows. Everything that reads plotly's private state is here.

function readView(gd, dims) {
  const full = gd._fullLayout;
  if (dims === 3) {
    const scene = full.scene && full.scene._scene;
    if (!scene || !scene.glplot) return null;
    const params = scene.glplot.cameraParams;
    const rect = scene.glplot.canvas.getBoundingClientRect();
    return {
      rect,
      view: {
        model: Array.from(params.model), view: Array.from(params.view), projection: Array.from(params.projection),
        data_scale: Array.from(scene.dataScale), width: rect.width, height: rect.height,
      },
    };
  }
  const xa = full.xaxis, ya = full.yaxis;
  const box = gd.getBoundingClientRect();
  const rect = { left: box.left + xa._offset, top: box.top + ya._offset, width: xa._length, height: ya._length };
  return {
    rect,
    view: { x_range: xa.range.map(Number), y_range: ya.range.map(Number), width: xa._length, height: ya._length },
  };
}

function readCamera(gd, dims) {
  const full = gd._fullLayout;
  if (!full) return null;
  if (dims === 3) {
    // the camera as drawn now (the layout's copy lags behind a rotation that is still easing out)
    const scene = full.scene && full.scene._scene;
    const cam = scene && scene.getCamera ? scene.getCamera() : full.scene && full.scene.camera;
    return cam ? JSON.parse(JSON.stringify(cam)) : null;
  }
  return { x: full.xaxis.range.slice(), y: full.yaxis.range.slice() };
}

// ------------------------------------------------------------------ data → traces

function column(table, name) {
  const child = table && table.getChild(name);
  return child ? child.toArray() : null;
}

function templateText(s) {
  return String(s).replace(/%/g, "&#37;"); // a literal % must not start a plotly template field
}

function buildFigure(data, state) {
  const meta = data.meta;
  const dims = meta.dims;
  const n = meta.n;
  const x = column(data.points, "x"), y = column(data.points, "y"), z = dims === 3 ? column(data.points, "z") : null;
  const codes = column(data.points, "c");
  const score = meta.has_score ? column(data.points, "s") : null;
  let names = null;
  if (meta.has_names && data.names) {
    const col = data.names.getChild("name");
    names = new Array(col.length);
    for (let i = 0; i < col.length; i++) names[i] = col.get(i);
  }
  const nGroups = meta.one_trace ? 1 : meta.classes.length;

  // rows of each class (one group in one-trace mode), by counting sort
  const counts = new Int32Array(nGroups + 1);
  for (let i = 0; i < n; i++) counts[(meta.one_trace ? 0 : codes[i]) + 1]++;
  for (let k = 1; k < counts.length; k++) counts[k] += counts[k - 1];
  const order = new Int32Array(n), fill = counts.slice(0, -1);
  for (let i = 0; i < n; i++) order[fill[meta.one_trace ? 0 : codes[i]]++] = i;

  const size = n <= 5000 ? (dims === 3 ? 3 : 6) : (dims === 3 ? 2 : 3);
  const traceType = dims === 3 ? "scatter3d" : "scattergl";
  const traces = [], traceRows = [];
  const gather = (src, rows, Kind) => {
    const out = new Kind(rows.length);
    for (let j = 0; j < rows.length; j++) out[j] = src[rows[j]];
    return out;
  };
  const scoreLabel = score ? `<br>${templateText(meta.score_name)} %{customdata:.3f}` : "";
  for (let g = 0; g < nGroups; g++) {
    const rows = order.subarray(counts[g], counts[g + 1]);
    const name = meta.one_trace ? `${meta.classes.length} classes` : meta.classes[g];
    let marker;
    if (score) {
      // reversed: plotly's YlOrRd runs dark to light, and the most suspect should be the darkest red
      marker = { color: gather(score, rows, Float32Array), colorscale: "YlOrRd", reversescale: true, cmin: 0, cmax: 1 };
      if (g === 0) {
        marker.showscale = true;
        // under the map, so it does not sit on the legend
        marker.colorbar = { title: { text: templateText(meta.score_name), side: "right" }, orientation: "h",
          thickness: 10, len: 0.5, x: 0.5, xanchor: "center", y: 0, yanchor: "top", ypad: 4 };
      }
    } else if (meta.one_trace) {
      marker = { color: gather(codes, rows, Float32Array), colorscale: "Turbo", cmin: 0,
        cmax: Math.max(1, meta.classes.length - 1) };
    } else {
      marker = { color: meta.colours[g] };
    }
    marker.size = size;
    const t = {
      type: traceType, mode: "markers", name, uid: `n${g}`, marker,
      x: gather(x, rows, Float32Array), y: gather(y, rows, Float32Array),
      hovertemplate: `<b>${templateText(name)}</b>${names ? "<br>%{text}" : ""}${scoreLabel}<extra></extra>`,
      visible: state.hidden.has(`g${g}`) ? "legendonly" : true,
    };
    if (z) t.z = gather(z, rows, Float32Array);
    if (names) t.text = Array.from(rows, (r) => names[r]);
    if (score) t.customdata = gather(score, rows, Float32Array);
    traces.push(t);
    traceRows.push(rows);
  }

  const layout = {
    height: state.height, margin: { l: 0, r: 0, t: meta.title ? 40 : 26, b: score ? 44 : 0 }, // t: room for the modebar
    title: meta.title ? { text: meta.title } : undefined,
    legend: { itemsizing: "constant" }, hovermode: "closest", uirevision: "cleaner-map", showlegend: true,
  };
  if (dims === 3) {
    const axis = { title: { text: "" } };
    layout.scene = { xaxis: axis, yaxis: axis, zaxis: axis, dragmode: "turntable", uirevision: "cleaner-map" };
    if (state.camera) layout.scene.camera = state.camera;
  } else {
    layout.dragmode = "pan";
    layout.xaxis = { title: { text: "" }, zeroline: false };
    layout.yaxis = { title: { text: "" }, zeroline: false, scaleanchor: "x" };
    if (state.camera) {
      layout.xaxis.range = state.camera.x; layout.xaxis.autorange = false;
      layout.yaxis.range = state.camera.y; layout.yaxis.autorange = false;
    }
  }
  return { traces, traceRows, layout, dims, x, y, z, codes, score, n };
}

// ------------------------------------------------------------------ the map element

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
    key, root, tool: "pan", figure: null, setTriggerValue: null, height: 600, dims: null,
    gd: root.querySelector(".cleaner-map-gd"), plot: root.querySelector(".cleaner-map-plot"),
    overlay: root.querySelector(".cleaner-map-overlay"), path: root.querySelector(".cleaner-map-overlay path"),
    message: root.querySelector(".cleaner-map-message"), marksCanvas: root.querySelector(".cleaner-map-marks"),
    marks: { selected: new Int32Array(0), excluded: new Int32Array(0) }, marksFrame: 0,
    camera: saved.camera || null, hidden: new Set(saved.hidden || []), savedDims: saved.dims || null,
    drawing: null, queue: Promise.resolve(), listeners: [],
  };
  const listen = (target, type, fn, opts) => {
    target.addEventListener(type, fn, opts);
    state.listeners.push(() => target.removeEventListener(type, fn, opts));
  };
  root.querySelectorAll("button[data-tool]").forEach((button) =>
    listen(button, "click", () => setTool(state, button.dataset.tool)));
  const showExcluded = root.querySelector("input[data-show=excluded]");
  showExcluded.checked = saved.showExcluded !== false;
  state.showExcluded = showExcluded.checked;
  listen(showExcluded, "change", () => { state.showExcluded = showExcluded.checked; remember(state); drawMarks(state); });
  if (saved.tool && saved.tool !== "pan") setTool(state, saved.tool); // a remount keeps the tool the user chose
  listen(state.overlay, "pointerdown", (ev) => startShape(state, ev));
  listen(state.overlay, "pointermove", (ev) => moveShape(state, ev));
  listen(state.overlay, "pointerup", (ev) => endShape(state, ev));
  listen(state.overlay, "pointercancel", () => cancelShape(state));
  listen(window, "keydown", (ev) => { if (ev.key === "Escape") cancelShape(state); });
  // The wheel scrolls the page (scrollZoom is off); with Ctrl or ⌘ it zooms the map instead.
  listen(state.plot, "wheel", (ev) => zoomWheel(state, ev), { passive: false, capture: true });
  const resize = new ResizeObserver(() => scheduleMarks(state));
  resize.observe(state.plot);
  state.listeners.push(() => resize.disconnect());
  const entry = MAPS.get(key) || {};
  entry.state = state;
  entry.apply = (marks) => setMarks(state, marks);
  MAPS.set(key, entry);
  if (entry.marks) state.marks = entry.marks;
  return state;
}

function setTool(state, tool) {
  state.tool = tool;
  VIEWS.set(state.key, { ...(VIEWS.get(state.key) || {}), tool });
  state.root.querySelectorAll("button[data-tool]").forEach((b) =>
    b.setAttribute("aria-pressed", String(b.dataset.tool === tool)));
  state.overlay.classList.toggle("active", tool !== "pan");
  cancelShape(state);
}

function localPoint(state, ev) {
  const r = state.overlay.getBoundingClientRect();
  return [ev.clientX - r.left, ev.clientY - r.top];
}

function shapePath(points, closed) {
  if (!points.length) return "";
  return "M" + points.map((p) => `${p[0].toFixed(1)},${p[1].toFixed(1)}`).join("L") + (closed ? "Z" : "");
}

function boxCorners(a, b) {
  return [[a[0], a[1]], [b[0], a[1]], [b[0], b[1]], [a[0], b[1]]];
}

function startShape(state, ev) {
  if (state.tool === "pan" || ev.button !== 0 || !state.figure) return;
  ev.preventDefault();
  state.overlay.setPointerCapture(ev.pointerId);
  const p = localPoint(state, ev);
  state.drawing = { tool: state.tool, start: p, points: [p], last: p };
}

function moveShape(state, ev) {
  const d = state.drawing;
  if (!d) return;
  const p = localPoint(state, ev);
  if (d.tool === "box") {
    d.last = p;
    state.path.setAttribute("d", shapePath(boxCorners(d.start, p), true));
  } else {
    const q = d.points[d.points.length - 1];
    if (Math.hypot(p[0] - q[0], p[1] - q[1]) >= LASSO_STEP_PX) d.points.push(p);
    d.last = p;
    state.path.setAttribute("d", shapePath(d.points, false));
  }
}

function cancelShape(state) {
  state.drawing = null;
  state.path.setAttribute("d", "");
}

function thinned(points) {
  if (points.length <= MAX_VERTICES) return points;
  const step = points.length / MAX_VERTICES;
  const out = [];
  for (let i = 0; i < MAX_VERTICES; i++) out.push(points[Math.floor(i * step)]);
  return out;
}

function endShape(state, ev) {
  const d = state.drawing;
  if (!d) return;
  state.drawing = null;
  window.__cleanerMapReleasedAt = Date.now(); // read by bench/map_draw.py
  const end = localPoint(state, ev);
  let polygon;
  if (d.tool === "box") {
    if (Math.abs(end[0] - d.start[0]) < MIN_DRAG_PX || Math.abs(end[1] - d.start[1]) < MIN_DRAG_PX) return cancelShape(state);
    polygon = boxCorners(d.start, end);
  } else {
    const last = d.points[d.points.length - 1];
    if (last[0] !== end[0] || last[1] !== end[1]) d.points.push(end);
    polygon = thinned(d.points);
    if (polygon.length < 3) return cancelShape(state);
    state.path.setAttribute("d", shapePath(polygon, true));
  }
  const view = readView(state.gd, state.figure.dims);
  if (!view) return cancelShape(state);
  // pixels relative to the drawing area the camera projects onto (the overlay covers it, give or take a resize)
  const overlayRect = state.overlay.getBoundingClientRect();
  const dx = view.rect.left - overlayRect.left, dy = view.rect.top - overlayRect.top;
  const mode = ev.shiftKey ? "add" : ev.altKey ? "remove" : "replace";
  sendEvent(state, {
    kind: d.tool, mode, dims: state.figure.dims, view: view.view, hidden: hiddenClasses(state),
    polygon: polygon.map((p) => [Math.round((p[0] - dx) * 100) / 100, Math.round((p[1] - dy) * 100) / 100]),
  });
}

function hiddenClasses(state) {
  // class codes whose legend entry is switched off; in one-trace mode that entry stands for every class
  const out = [];
  const meta = state.meta;
  state.gd.data.forEach((t) => {
    if (!t.uid || t.uid[0] !== "n" || t.visible === true || t.visible === undefined) return;
    const g = Number(t.uid.slice(1));
    if (meta.one_trace) for (let c = 0; c < meta.classes.length; c++) out.push(c);
    else out.push(g);
  });
  return out;
}

function sendEvent(state, event) {
  state.root.dataset.events = String(Number(state.root.dataset.events || 0) + 1);
  state.setTriggerValue("event", event);
}

function zoomWheel(state, ev) {
  // Caught on the way down (capture phase): plotly's 3D camera cancels every wheel event it sees, zoom or not,
  // so a plain wheel must not reach it for the page to scroll.
  ev.stopPropagation();
  if (!(ev.ctrlKey || ev.metaKey) || !state.figure) return;
  ev.preventDefault();
  const factor = Math.exp(Math.max(-200, Math.min(200, ev.deltaY)) * 0.002);
  const Plotly = window.Plotly;
  if (state.figure.dims === 3) {
    const cam = readCamera(state.gd, 3);
    const c = cam.center, e = cam.eye;
    cam.eye = { x: c.x + (e.x - c.x) * factor, y: c.y + (e.y - c.y) * factor, z: c.z + (e.z - c.z) * factor };
    Plotly.relayout(state.gd, { "scene.camera": cam });
  } else {
    const view = readView(state.gd, 2);
    const [px, py] = [ev.clientX - view.rect.left, ev.clientY - view.rect.top];
    const [x0, x1] = view.view.x_range, [y0, y1] = view.view.y_range;
    const fx = x0 + (px / view.rect.width) * (x1 - x0), fy = y1 - (py / view.rect.height) * (y1 - y0);
    Plotly.relayout(state.gd, {
      "xaxis.range": [fx + (x0 - fx) * factor, fx + (x1 - fx) * factor],
      "yaxis.range": [fy + (y0 - fy) * factor, fy + (y1 - fy) * factor],
    });
  }
}

// ------------------------------------------------------------------ marks: selection and excluded rows

const YLORRD = [[255, 255, 204], [255, 237, 160], [254, 217, 118], [254, 178, 76], [253, 141, 60], [252, 78, 42],
  [227, 26, 28], [189, 0, 38], [128, 0, 38]];

function scoreColour(v) {
  const t = Math.min(1, Math.max(0, v)) * (YLORRD.length - 1), i = Math.min(YLORRD.length - 2, Math.floor(t)), f = t - i;
  const a = YLORRD[i], b = YLORRD[i + 1];
  const mix = (c) => Math.round(a[c] + (b[c] - a[c]) * f);
  return `rgb(${mix(0)},${mix(1)},${mix(2)})`;
}

function setMarks(state, marks) {
  state.marks = marks;
  state.path.setAttribute("d", ""); // the shape drawn has done its work: its rows are highlighted now
  state.root.dataset.selected = String(marks.selected.length);
  state.root.dataset.excluded = String(marks.excluded.length);
  drawMarks(state);
  state.root.dataset.marks = String(Number(state.root.dataset.marks || 0) + 1);
  window.__cleanerMapMarkedAt = Date.now(); // read by bench/map_draw.py
}

function scheduleMarks(state) {
  if (state.marksFrame) return;
  state.marksFrame = requestAnimationFrame(() => { state.marksFrame = 0; drawMarks(state); });
}

// page pixels (relative to the drawing area) of the given rows, through the view plotly shows now
function projector(view, fig) {
  const { x, y, z } = fig;
  if (fig.dims === 3) {
    const v = view.view, mul = (a, b) => { // column-major 4×4 product a·b
      const o = new Float64Array(16);
      for (let c = 0; c < 4; c++) for (let r = 0; r < 4; r++) {
        let sum = 0;
        for (let k = 0; k < 4; k++) sum += a[k * 4 + r] * b[c * 4 + k];
        o[c * 4 + r] = sum;
      }
      return o;
    };
    const m = mul(v.projection, mul(v.view, v.model)), [sx, sy, sz] = v.data_scale, w = v.width, h = v.height;
    return (row, out) => {
      const px = x[row] * sx, py = y[row] * sy, pz = z[row] * sz;
      const cw = m[3] * px + m[7] * py + m[11] * pz + m[15];
      if (cw <= 1e-12) return false;
      out[0] = (0.5 + 0.5 * (m[0] * px + m[4] * py + m[8] * pz + m[12]) / cw) * w;
      out[1] = (0.5 - 0.5 * (m[1] * px + m[5] * py + m[9] * pz + m[13]) / cw) * h;
      return true;
    };
  }
  const [x0, x1] = view.view.x_range, [y0, y1] = view.view.y_range, w = view.view.width, h = view.view.height;
  return (row, out) => {
    out[0] = (x[row] - x0) / (x1 - x0) * w;
    out[1] = (1 - (y[row] - y0) / (y1 - y0)) * h;
    return true;
  };
}

function drawMarks(state) {
  const canvas = state.marksCanvas, fig = state.figure;
  const ctx = canvas.getContext("2d");
  if (!fig || !state.gd._fullLayout) {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    return;
  }
  const view = readView(state.gd, fig.dims);
  if (!view) return;
  const plotRect = state.plot.getBoundingClientRect(), ratio = window.devicePixelRatio || 1;
  const w = view.rect.width, h = view.rect.height;
  // the marks canvas and the drawing overlay cover the drawing area only: legend and modebar stay clickable
  for (const el of [canvas, state.overlay]) {
    el.style.left = `${view.rect.left - plotRect.left}px`;
    el.style.top = `${view.rect.top - plotRect.top}px`;
    el.style.width = `${w}px`;
    el.style.height = `${h}px`;
  }
  if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const { selected, excluded } = state.marks;
  if (!selected.length && !excluded.length) return;
  const meta = state.meta, hiddenGroups = new Set(hiddenClasses(state)), codes = fig.codes;
  const shown = (row) => row < fig.n && !hiddenGroups.has(codes[row]);
  const project = projector(view, fig), p = [0, 0];
  const inside = () => p[0] >= -4 && p[0] <= w + 4 && p[1] >= -4 && p[1] <= h + 4;
  if (selected.length) {
    ctx.fillStyle = "rgba(255, 255, 255, 0.72)"; // dims everything the selection does not cover
    ctx.fillRect(0, 0, w, h);
    // many selected points: small and without outline, or the outlines merge into a dark mass
    const dense = selected.length > 3000;
    const radius = fig.n <= 5000 ? 3.2 : dense ? 1.7 : 2.4;
    const byColour = new Map();
    for (let i = 0; i < selected.length; i++) {
      const row = selected[i];
      if (!shown(row) || !project(row, p) || !inside()) continue;
      const colour = fig.score ? scoreColour(fig.score[row]) : meta.colours[codes[row] % meta.colours.length];
      let list = byColour.get(colour);
      if (!list) byColour.set(colour, (list = []));
      list.push(p[0], p[1]);
    }
    ctx.lineWidth = 0.6;
    ctx.strokeStyle = "rgba(0, 0, 0, 0.55)";
    for (const [colour, list] of byColour) {
      ctx.fillStyle = colour;
      ctx.beginPath();
      for (let k = 0; k < list.length; k += 2) {
        ctx.moveTo(list[k] + radius, list[k + 1]);
        ctx.arc(list[k], list[k + 1], radius, 0, 2 * Math.PI);
      }
      ctx.fill();
      if (!dense) ctx.stroke();
    }
  }
  if (excluded.length && state.showExcluded) {
    const arm = fig.n <= 5000 ? 4.5 : 3.5;
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 1.6;
    ctx.beginPath();
    for (let i = 0; i < excluded.length; i++) {
      const row = excluded[i];
      if (!shown(row) || !project(row, p) || !inside()) continue;
      ctx.moveTo(p[0] - arm, p[1] - arm); ctx.lineTo(p[0] + arm, p[1] + arm);
      ctx.moveTo(p[0] - arm, p[1] + arm); ctx.lineTo(p[0] + arm, p[1] - arm);
    }
    ctx.stroke();
  }
}

function remember(state) {
  if (!state.figure || !state.gd._fullLayout) return;
  const hidden = [];
  state.gd.data.forEach((t) => {
    if (t.visible === "legendonly" && t.uid[0] === "n") hidden.push(`g${t.uid.slice(1)}`);
  });
  state.hidden = new Set(hidden);
  state.camera = readCamera(state.gd, state.figure.dims);
  VIEWS.set(state.key, { camera: state.camera, hidden, dims: state.figure.dims, showExcluded: state.showExcluded,
    tool: state.tool });
}

async function render(state, data) {
  const Plotly = await whenPlotly();
  const started = performance.now();
  if (state.figure) remember(state);
  if (state.figure && state.figure.dims !== data.meta.dims) {
    state.camera = null; // a 2D range means nothing to a 3D camera and back
    Plotly.purge(state.gd);
    state.figure = null;
  } else if (!state.figure && state.savedDims !== data.meta.dims) {
    state.camera = null;
  }
  state.meta = data.meta;
  state.plot.style.height = `${state.height}px`;
  const fig = buildFigure(data, state);
  const config = {
    scrollZoom: false, displaylogo: false, responsive: true, doubleClick: "reset+autosize",
    modeBarButtonsToRemove: ["select2d", "lasso2d", "toImage"],
  };
  const fresh = !state.figure;
  await Plotly.react(state.gd, fig.traces, fig.layout, config);
  state.figure = fig;
  if (fresh) {
    state.gd.on("plotly_click", (ev) => onClick(state, ev));
    state.gd.on("plotly_relayout", () => { remember(state); scheduleMarks(state); });
    state.gd.on("plotly_relayouting", () => scheduleMarks(state));
    state.gd.on("plotly_restyle", () => { remember(state); scheduleMarks(state); });
    state.gd.on("plotly_legendclick", () => { setTimeout(() => { remember(state); scheduleMarks(state); }, 0); });
  }
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  remember(state);
  if (fresh) setMarks(state, state.marks); // marks that arrived before the map was drawn
  else drawMarks(state);
  state.message.style.display = "none";
  state.path.setAttribute("d", "");
  state.root.dataset.draws = String(Number(state.root.dataset.draws) + 1);
  state.root.dataset.points = String(data.meta.n);
  state.root.dataset.dims = String(data.meta.dims);
  // read by bench/map_draw.py and the browser tests
  window.__cleanerMapDrawn = { key: state.key, n: data.meta.n, at: Date.now(), ms: performance.now() - started };
}

function onClick(state, ev) {
  if (state.tool !== "pan" || !ev || !ev.points || !ev.points.length) return;
  const p = ev.points[0];
  const rows = state.figure.traceRows[p.curveNumber];
  if (!rows || p.pointNumber == null || p.pointNumber >= rows.length) return;
  const e = ev.event || {};
  const mode = e.shiftKey ? "add" : e.altKey ? "remove" : "replace";
  sendEvent(state, { kind: "click", row: rows[p.pointNumber], mode });
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  const key = (data && data.meta && data.meta.key) || component.key || "map";
  let state = parentElement.__cleanerMap;
  if (!state) {
    state = createMap(parentElement, key);
    parentElement.__cleanerMap = state;
  }
  state.setTriggerValue = setTriggerValue;
  if (data && data.meta) {
    state.height = Number(data.meta.height) || 600;
    // renders run one after another: a newer payload waits for the drawing of the previous one
    state.queue = state.queue.then(() => render(state, data)).catch((err) => {
      state.message.style.display = "flex";
      state.message.textContent = `The map could not be drawn: ${err && err.message ? err.message : err}`;
      console.error(err);
    });
  }
  return () => {
    remember(state);
    state.listeners.forEach((off) => off());
    const entry = MAPS.get(key);
    if (entry && entry.state === state) { entry.state = null; entry.apply = null; }
    if (window.Plotly) window.Plotly.purge(state.gd);
    parentElement.__cleanerMap = undefined;
  };
}
