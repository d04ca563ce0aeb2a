// The colours element of cleaner's map: hands the class codes, scores and palette (one binary message, decoded by
// the map's decode.js) to the map drawn by map.js with the same key. A script of its own, kept small.
// A rerun that changes no colour sends a reference ({map_key, ref}) to the message handed before instead.
const asks = new Map(); // map key -> {ref, count, timer}: asks for the whole message until it arrives

function askForColours(maps, mapKey, ref, setTriggerValue, tries = 0) {
  const ask = asks.get(mapKey) || { count: 0 };
  clearTimeout(ask.timer);
  const entry = maps.get(mapKey);
  if ((entry && entry.coloursRef === ref) || tries >= 10) return;
  ask.count += 1; // a new value each time: always a change, and a lost trigger is sent again
  setTriggerValue("resend", `${ref}#${ask.count}`);
  ask.timer = setTimeout(() => askForColours(maps, mapKey, ref, setTriggerValue, tries + 1), 3000);
  asks.set(mapKey, ask);
}

export default function ({ data, setTriggerValue }) {
  if (!data) return;
  const maps = window.__cleanerMaps || (window.__cleanerMaps = new Map());
  if (!(data instanceof ArrayBuffer || ArrayBuffer.isView(data))) {
    const entry = maps.get(data.map_key);
    if (!entry || entry.coloursRef !== data.ref) askForColours(maps, data.map_key, data.ref, setTriggerValue);
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
