// The map's styles, put into the page once (the element is not in a shadow root: plotly's own CSS lives in the
// document's head and must reach the modebar and hover labels).

const STYLE_ID = "cleaner-map-style";

const MAP_CSS = `
.cleaner-map { position: relative; font-family: inherit; }
.cleaner-map-toolbar { display: flex; gap: 0.4rem; align-items: center; flex-wrap: wrap; margin-bottom: 0.3rem;
  font-size: 0.85rem; }
.cleaner-map-toolbar button { border: 1px solid rgba(128,128,128,0.45); border-radius: 0.4rem; padding: 0.15rem 0.7rem;
  background: transparent; color: inherit; cursor: pointer; font: inherit; }
.cleaner-map-toolbar button[aria-pressed="true"] { background: rgba(255, 75, 75, 0.14); border-color: rgb(255, 75, 75); }
.cleaner-map-hint { opacity: 0.7; }
.cleaner-map-plot { position: relative; width: 100%; }
.cleaner-map-gd { position: absolute; inset: 0; }
.cleaner-map-overlay { position: absolute; left: 0; top: 0; width: 100%; height: 100%; pointer-events: none; z-index: 5;
  overflow: hidden; }
.cleaner-map-overlay.active { pointer-events: auto; cursor: crosshair; }
.cleaner-map-overlay path { fill: rgba(255, 75, 75, 0.08); stroke: rgb(255, 75, 75); stroke-width: 1.5;
  stroke-dasharray: 5 3; }
.cleaner-map-marks { position: absolute; pointer-events: none; z-index: 4; }
.cleaner-map-message { position: absolute; inset: 0; display: flex; align-items: center; justify-content: center;
  opacity: 0.7; pointer-events: none; }
`;

export function ensureStyle() {
  if (document.getElementById(STYLE_ID)) return;
  const style = document.createElement("style");
  style.id = STYLE_ID;
  style.textContent = MAP_CSS;
  document.head.appendChild(style);
}
