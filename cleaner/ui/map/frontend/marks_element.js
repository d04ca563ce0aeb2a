// The marks element of cleaner's map: hands the selected and excluded rows (Arrow tables) to the map drawn by
// map.js with the same key. A script of its own, kept small: it travels with every new selection.
export default function ({ data }) {
  if (!data || !data.map_key) return;
  const maps = window.__cleanerMaps || (window.__cleanerMaps = new Map());
  // row numbers ("row"), or one bit per point ("bits", little-endian bit order) for large sets
  const rows = (table) => {
    if (table && table.getChild("row")) return table.getChild("row").toArray();
    if (!table || !table.getChild("bits")) return new Int32Array(0);
    const bits = table.getChild("bits").toArray();
    let count = 0;
    for (let i = 0; i < bits.length; i++) for (let b = bits[i]; b; b &= b - 1) count++;
    const out = new Int32Array(count);
    let k = 0;
    for (let i = 0; i < bits.length; i++) {
      const byte = bits[i];
      if (byte) for (let b = 0; b < 8; b++) if (byte & (1 << b)) out[k++] = i * 8 + b;
    }
    return out;
  };
  const entry = maps.get(data.map_key) || {};
  // team mode: which excluded rows a teammate excluded (drawn apart from yours)
  entry.marks = {
    selected: rows(data.selected), excluded: rows(data.excluded), teamExcluded: rows(data.team_excluded),
    team: Boolean(data.team),
  };
  maps.set(data.map_key, entry);
  if (entry.apply) entry.apply(entry.marks);
}
