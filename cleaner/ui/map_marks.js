// The marks element of cleaner's map: hands the selected and excluded rows (Arrow tables) to the map drawn by
// map_component.js with the same key. A script of its own, kept small: it travels with every new selection.
export default function ({ data }) {
  if (!data || !data.map_key) return;
  const maps = window.__cleanerMaps || (window.__cleanerMaps = new Map());
  const rows = (table) => (table && table.getChild("row") ? table.getChild("row").toArray() : new Int32Array(0));
  const entry = maps.get(data.map_key) || {};
  entry.marks = { selected: rows(data.selected), excluded: rows(data.excluded) };
  maps.set(data.map_key, entry);
  if (entry.apply) entry.apply(entry.marks);
}
