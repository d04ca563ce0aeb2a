// Everything that reads plotly.js's private state, in one place. plotly.js has no public API for a 3D scene's
// projection, a 2D plot area's pixel box, the point its own picking found under the pointer, or its WebGL contexts;
// the map needs all four (a drawn shape goes to Python with the camera it was drawn through; a click selects what
// plotly picked; an unmounted map gives its contexts back at once).

const PLOTLY_WAIT_MS = 60000;
const CLICK_PICK_PX = 5; // plotly's own 3D click takes a pick this close (scene.js: selection.distance < 5)

// plotly.js: from the asset folder when the points message names its file there (evaluated as a module, the UMD
// bundle sets window.Plotly), else from the "cleaner.plotlyjs" element, which sets it when it mounts.
export async function whenPlotly(file) {
  if (!window.Plotly && file) await import(new URL(file, import.meta.url).href);
  if (window.Plotly) return window.Plotly;
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

// The drawing area in page pixels (rect) and the view the event sends to Python (camera matrices or axis ranges).
export function readView(gd, dims) {
  const full = gd._fullLayout;
  if (!full) return null;
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
  if (!xa || !ya) return null;
  const box = gd.getBoundingClientRect();
  const rect = { left: box.left + xa._offset, top: box.top + ya._offset, width: xa._length, height: ya._length };
  return {
    rect,
    view: { x_range: xa.range.map(Number), y_range: ya.range.map(Number), width: xa._length, height: ya._length },
  };
}

export function readCamera(gd, dims) {
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

// The point plotly's own picking found under the pointer: {curve, point} or null. In 3D that is gl-plot3d's pick
// buffer (what is drawn there, nearest first, occlusion and clipping included), updated on every pointer move
// without a button held; in 2D it is the hover's closest point.
export function pickedPoint(gd, dims) {
  const full = gd._fullLayout;
  if (!full) return null;
  if (dims === 3) {
    const scene = full.scene && full.scene._scene;
    const sel = scene && scene.glplot && scene.glplot.selection;
    if (!sel || !sel.object || !(sel.distance <= CLICK_PICK_PX)) return null;
    const trace = sel.object._trace ? sel.object._trace.data : sel.object.data;
    if (!trace || trace.index == null || sel.index == null) return null;
    return { curve: trace.index, point: sel.index };
  }
  const hover = gd._hoverdata;
  if (!hover || !hover.length || hover[0].curveNumber == null || hover[0].pointNumber == null) return null;
  return { curve: hover[0].curveNumber, point: hover[0].pointNumber };
}

export function resizePlot(gd) {
  // only a plot on screen: plotly refuses (with a rejected promise) to size a hidden or detached one
  if (!window.Plotly || !gd._fullLayout || !gd.isConnected || !gd.offsetWidth || !gd.offsetHeight) return;
  Promise.resolve(window.Plotly.Plots.resize(gd)).catch(() => {});
}

// plotly.purge, then the plot's WebGL contexts let go of at once: purge leaves them to the garbage collector, and
// a browser keeps about 16 live contexts, dropping the oldest (a map still on screen, maybe) when a page makes more.
export function purgePlot(Plotly, gd) {
  const contexts = [];
  const full = gd._fullLayout;
  if (full) {
    const scene = full.scene && full.scene._scene;
    if (scene && scene.glplot && scene.glplot.gl) contexts.push(scene.glplot.gl); // 3D: gl-plot3d's context
    if (full._glcanvas) full._glcanvas.each((d) => { if (d && d.regl && d.regl._gl) contexts.push(d.regl._gl); }); // 2D: regl's
  }
  Plotly.purge(gd);
  for (const gl of contexts) {
    const lose = gl.isContextLost() ? null : gl.getExtension("WEBGL_lose_context");
    if (lose) lose.loseContext();
  }
}
