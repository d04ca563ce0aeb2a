// The colours element of cleaner's map: hands the class codes, scores and palette (one binary message, decoded by
// the map's decode.js) to the map drawn by map.js with the same key. A script of its own, kept small.
// A rerun that changes no colour sends a reference ({map_key, ref}) to the message handed before instead.
export default function ({ data, setTriggerValue }) {
  if (!data) return;
  const maps = window.__cleanerMaps || (window.__cleanerMaps = new Map());
  if (!(data instanceof ArrayBuffer || ArrayBuffer.isView(data))) {
    const entry = maps.get(data.map_key);
    if (!entry || entry.coloursRef !== data.ref) setTriggerValue("resend", data.ref); // no copy here: send it whole
    return;
  }
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data.buffer || data, data.byteOffset || 0);
  const length = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
  const head = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + length)));
  if (!head.map_key) return;
  const entry = maps.get(head.map_key) || {};
  entry.colours = bytes;
  entry.coloursRef = head.ref;
  maps.set(head.map_key, entry);
  if (entry.applyColours) entry.applyColours(bytes);
}
