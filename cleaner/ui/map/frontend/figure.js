// Points and colours → plotly traces and layout: one trace per class (or one coloured by class code above 40
// classes), each with the rows it draws (traceRows), so a picked (curve, point) is a dataset row.

export const MAX_ZOOM = 64; // the view never shows less than 1/64 of the map's box: fixed-point error < 1 px

function templateText(s) {
  return String(s).replace(/%/g, "&#37;"); // a literal % must not start a plotly template field
}

export function buildFigure(points, colours, state) {
  const meta = colours.meta, codes = colours.codes, score = colours.score;
  const { dims, n, x, y, z } = points;
  const names = meta.names || null;
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
  const scoreLabel = score ? `<br>${templateText(meta.score_name)} %{customdata:.2f}` : "";
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
  // the smallest span the view may show, per axis (2D) — see MAX_ZOOM
  const minSpan = points.step.map((s) => Math.max(s * 65535 / MAX_ZOOM, 1e-12));
  return { traces, traceRows, layout, dims, x, y, z, codes, score, n, minSpan };
}
