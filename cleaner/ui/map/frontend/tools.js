// What the hand does on the map: Move (plotly rotates, pans), Box, Lasso; clicks; Ctrl/⌘ + wheel zoom.
//
// A click is decided on release: the pointer's position and modifier keys are taken on pointerdown (capture phase,
// before plotly sees the press) and a click is sent only when the pointer comes up less than CLICK_SLOP_PX from
// there. Anything longer is a drag (a rotation or a pan) and never touches the selection, whatever it passed over:
// plotly's own plotly_click (which gl-plot3d fires on press, and again on every frame of a drag over a point, with
// no modifier keys) is not listened to. Shift adds, Alt removes, in 3D and 2D.

import { pickedPoint, readCamera, readView } from "./plotly_internals.js";
import { projector } from "./marks.js";
import { MAX_ZOOM } from "./figure.js";

const CLICK_SLOP_PX = 4;
const CLICK_2D_PX = 12; // a 2D click takes plotly's hovered point only this close to the pointer
const MIN_DRAG_PX = 3;
const LASSO_STEP_PX = 2;
const MAX_VERTICES = 1500; // events.MAX_POLYGON_VERTICES is the limit Python accepts
const OUTLINE_MS = 1500; // a drawn shape's outline stays until its rows are highlighted, at most this long

export function modeOf(keys) {
  return keys.shiftKey ? "add" : keys.altKey ? "remove" : "replace";
}

export function hiddenClasses(state) {
  // class codes whose legend entry is switched off; in one-trace mode that entry stands for every class
  const out = [];
  const meta = state.meta;
  if (!meta || !state.gd.data) return out;
  state.gd.data.forEach((t) => {
    if (!t.uid || t.uid[0] !== "n" || t.visible === true || t.visible === undefined) return;
    const g = Number(t.uid.slice(1));
    if (meta.one_trace) for (let c = 0; c < meta.classes.length; c++) out.push(c);
    else out.push(g);
  });
  return out;
}

export function sendEvent(state, event) {
  if (state.disposed || !state.setTriggerValue) return;
  state.root.dataset.events = String(Number(state.root.dataset.events || 0) + 1);
  state.setTriggerValue("event", event);
}

export function clearOutline(state) {
  if (state.outlineTimer) clearTimeout(state.outlineTimer);
  state.outlineTimer = 0;
  state.path.setAttribute("d", "");
}

export function setTool(state, tool, remember) {
  state.tool = tool;
  remember(state);
  state.root.querySelectorAll("button[data-tool]").forEach((b) =>
    b.setAttribute("aria-pressed", String(b.dataset.tool === tool)));
  state.overlay.classList.toggle("active", tool !== "pan");
  cancelShape(state);
}

// ------------------------------------------------------------------ clicks

function onPress(state, ev) {
  state.press = null;
  if (state.tool !== "pan" || ev.button !== 0 || !ev.isPrimary || !state.figure) return;
  if (ev.target.closest && ev.target.closest(".modebar, .legend, .colorbar")) return;
  const view = readView(state.gd, state.figure.dims);
  if (!view) return;
  const r = view.rect;
  if (ev.clientX < r.left || ev.clientX > r.left + r.width || ev.clientY < r.top || ev.clientY > r.top + r.height) return;
  state.press = { id: ev.pointerId, x: ev.clientX, y: ev.clientY, far: 0,
    keys: { shiftKey: ev.shiftKey, altKey: ev.altKey } };
}

function onPointerMove(state, ev) {
  const p = state.press;
  if (p && ev.pointerId === p.id) p.far = Math.max(p.far, Math.hypot(ev.clientX - p.x, ev.clientY - p.y));
}

function onRelease(state, ev) {
  const p = state.press;
  state.press = null;
  if (!p || ev.pointerId !== p.id) return;
  if (Math.max(p.far, Math.hypot(ev.clientX - p.x, ev.clientY - p.y)) >= CLICK_SLOP_PX) return; // a drag
  const at = [ev.clientX, ev.clientY];
  // two frames: gl-plot3d picks on the pointer's last move, plotly's 2D hover runs after its own handlers
  requestAnimationFrame(() => requestAnimationFrame(() => clickAt(state, at, p.keys)));
}

function clickAt(state, at, keys) {
  const fig = state.figure;
  if (state.disposed || !fig) return;
  const picked = pickedPoint(state.gd, fig.dims);
  if (!picked) return;
  const rows = fig.traceRows[picked.curve];
  if (!rows || picked.point >= rows.length) return;
  const row = rows[picked.point];
  if (fig.dims === 2) {
    const view = readView(state.gd, 2), p = [0, 0];
    projector(view, fig)(row, p);
    if (Math.hypot(view.rect.left + p[0] - at[0], view.rect.top + p[1] - at[1]) > CLICK_2D_PX) return;
  }
  window.__cleanerMapClickedAt = Date.now(); // read by bench/map_draw.py
  sendEvent(state, { kind: "click", row, mode: modeOf(keys) });
}

// ------------------------------------------------------------------ box and lasso

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
  clearOutline(state);
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

export function cancelShape(state) {
  state.drawing = null;
  clearOutline(state);
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
  // Pixels relative to the drawing area the camera projects onto. The shape may reach past its edge (the outline
  // is cut there by the overlay); Python keeps only the points drawn inside the area.
  const overlayRect = state.overlay.getBoundingClientRect();
  const dx = view.rect.left - overlayRect.left, dy = view.rect.top - overlayRect.top;
  sendEvent(state, {
    kind: d.tool, mode: modeOf(ev), dims: state.figure.dims, view: view.view, hidden: hiddenClasses(state),
    polygon: polygon.map((p) => [Math.round((p[0] - dx) * 100) / 100, Math.round((p[1] - dy) * 100) / 100]),
  });
  // the outline goes when the rows come back highlighted (setMarks), or after a moment if nothing changed
  state.outlineTimer = setTimeout(() => clearOutline(state), OUTLINE_MS);
}

// ------------------------------------------------------------------ zoom

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
    const scale = Math.max(factor, MIN_EYE_DISTANCE / Math.max(1e-9, Math.hypot(e.x - c.x, e.y - c.y, e.z - c.z)));
    cam.eye = { x: c.x + (e.x - c.x) * scale, y: c.y + (e.y - c.y) * scale, z: c.z + (e.z - c.z) * scale };
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

// The default 3D eye sits 2.17 scene units from the centre; MAX_ZOOM times nearer is as close as the map goes.
const MIN_EYE_DISTANCE = Math.hypot(1.25, 1.25, 1.25) / MAX_ZOOM;

// However the view was zoomed (wheel, modebar, double click), it never shows less than 1/MAX_ZOOM of the map's box:
// the 16-bit coordinates then stay within a pixel of the data (payload.quantise_coords).
export function clampZoom(state) {
  const fig = state.figure, full = state.gd._fullLayout;
  if (!fig || !full || state.clamping) return;
  const update = {};
  if (fig.dims === 3) {
    const cam = readCamera(state.gd, 3);
    if (!cam) return;
    const c = cam.center, e = cam.eye, d = Math.hypot(e.x - c.x, e.y - c.y, e.z - c.z);
    if (d >= MIN_EYE_DISTANCE * 0.999 || d === 0) return;
    const s = MIN_EYE_DISTANCE / d;
    cam.eye = { x: c.x + (e.x - c.x) * s, y: c.y + (e.y - c.y) * s, z: c.z + (e.z - c.z) * s };
    update["scene.camera"] = cam;
  } else {
    ["x", "y"].forEach((axis, i) => {
      const r = full[`${axis}axis`].range.map(Number), span = r[1] - r[0], min = fig.minSpan[i];
      if (Math.abs(span) >= min * 0.999) return;
      const mid = (r[0] + r[1]) / 2, half = (Math.sign(span) || 1) * min / 2;
      update[`${axis}axis.range`] = [mid - half, mid + half];
    });
  }
  if (!Object.keys(update).length) return;
  state.clamping = true;
  Promise.resolve(window.Plotly.relayout(state.gd, update)).finally(() => { state.clamping = false; });
}

// ------------------------------------------------------------------ wiring

export function installTools(state, listen, remember) {
  state.root.querySelectorAll("button[data-tool]").forEach((button) =>
    listen(button, "click", () => setTool(state, button.dataset.tool, remember)));
  listen(state.overlay, "pointerdown", (ev) => startShape(state, ev));
  listen(state.overlay, "pointermove", (ev) => moveShape(state, ev));
  listen(state.overlay, "pointerup", (ev) => endShape(state, ev));
  listen(state.overlay, "pointercancel", () => cancelShape(state));
  listen(window, "keydown", (ev) => { if (ev.key === "Escape") cancelShape(state); });
  listen(state.plot, "pointerdown", (ev) => onPress(state, ev), { capture: true });
  listen(window, "pointermove", (ev) => onPointerMove(state, ev), { capture: true, passive: true });
  listen(window, "pointerup", (ev) => onRelease(state, ev), { capture: true });
  listen(window, "pointercancel", () => { state.press = null; }, { capture: true });
  // The wheel scrolls the page (scrollZoom is off); with Ctrl or ⌘ it zooms the map instead.
  listen(state.plot, "wheel", (ev) => zoomWheel(state, ev), { passive: false, capture: true });
}
