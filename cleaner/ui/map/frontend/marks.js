// The selected and excluded rows, drawn on a canvas over the drawing area (the selection highlighted with the rest
// dimmed, excluded points as ×): a new selection never redraws plotly's scene.

import { readView } from "./plotly_internals.js";

const YLORRD = [[255, 255, 204], [255, 237, 160], [254, 217, 118], [254, 178, 76], [253, 141, 60], [252, 78, 42],
  [227, 26, 28], [189, 0, 38], [128, 0, 38]];

function scoreColour(v) {
  const t = Math.min(1, Math.max(0, v)) * (YLORRD.length - 1), i = Math.min(YLORRD.length - 2, Math.floor(t)), f = t - i;
  const a = YLORRD[i], b = YLORRD[i + 1];
  const mix = (c) => Math.round(a[c] + (b[c] - a[c]) * f);
  return `rgb(${mix(0)},${mix(1)},${mix(2)})`;
}

// Pixels (relative to the drawing area) of a row through the view plotly shows now; false when the camera does not
// draw it (behind the camera, nearer than the near plane or beyond the far one).
export function projector(view, fig) {
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
      const cz = m[2] * px + m[6] * py + m[10] * pz + m[14];
      if (cw <= 1e-12 || Math.abs(cz) > cw) return false;
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

export function drawMarks(state, hidden) {
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
  const meta = state.meta, hiddenGroups = new Set(hidden), codes = fig.codes;
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
    const teamExcluded = state.marks.teamExcluded || [];
    const theirs = teamExcluded.length ? new Uint8Array(fig.n) : null;
    for (let i = 0; i < teamExcluded.length; i++) if (teamExcluded[i] < fig.n) theirs[teamExcluded[i]] = 1;
    for (const style of theirs ? [MINE, THEIRS] : [MINE]) {
      ctx.beginPath();
      for (let i = 0; i < excluded.length; i++) {
        const row = excluded[i];
        if ((theirs ? theirs[row] === 1 : false) !== (style === THEIRS)) continue;
        if (!shown(row) || !project(row, p) || !inside()) continue;
        traceMark(ctx, style, p[0], p[1], arm);
      }
      ctx.strokeStyle = style.colour;
      ctx.lineWidth = style.width;
      ctx.stroke();
    }
  }
}

// Excluded rows: yours a black ×, a teammate's (team mode) a violet × in a ring, told apart by shape as well as colour.
export const MINE = { colour: "#000", width: 1.6, ring: false };
export const THEIRS = { colour: "#7c3aed", width: 1.4, ring: true };

function traceMark(ctx, style, x, y, arm) {
  ctx.moveTo(x - arm, y - arm); ctx.lineTo(x + arm, y + arm);
  ctx.moveTo(x - arm, y + arm); ctx.lineTo(x + arm, y - arm);
  if (style.ring) {
    const r = arm * 1.6;
    ctx.moveTo(x + r, y);
    ctx.arc(x, y, r, 0, 2 * Math.PI);
  }
}

// The mark as a small inline SVG, for the legend in the toolbar.
export function markKey(style) {
  const ring = style.ring ? `<circle cx="8" cy="8" r="6.4" fill="none"/>` : "";
  return `<svg width="16" height="16" viewBox="0 0 16 16" aria-hidden="true" stroke="${style.colour}" ` +
    `stroke-width="${style.width}" style="vertical-align: -3px"><path d="M4 4L12 12M4 12L12 4"/>${ring}</svg>`;
}
