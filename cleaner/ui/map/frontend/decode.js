// The binary messages of payload.py: a 4-byte little-endian length, that much JSON, zero padding to 8 bytes, then
// the arrays. Points: uint16 fixed-point levels, axis after axis (coordinate = lo + level x step, in float64, kept
// as float32: exactly what Python resolves a shape against). Colours: class codes (uint8 or uint16), scores (uint8).

function asBytes(raw) {
  if (raw instanceof Uint8Array) return raw;
  if (raw instanceof ArrayBuffer) return new Uint8Array(raw);
  if (ArrayBuffer.isView(raw)) return new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
  throw new Error("the map's data is not binary");
}

export function unpackMessage(raw) {
  const bytes = asBytes(raw);
  const length = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
  const head = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + length)));
  const start = 4 + length + ((8 - ((4 + length) % 8)) % 8);
  return { head, body: bytes.subarray(start) };
}

// A typed array over `count` items of `Kind` at `offset` of the body, copied (the body need not be aligned).
function typed(body, offset, count, Kind) {
  const size = count * Kind.BYTES_PER_ELEMENT;
  if (offset + size > body.byteLength) throw new Error("the map's data is shorter than its header says");
  return new Kind(body.slice(offset, offset + size).buffer);
}

export function decodePoints(raw) {
  const { head, body } = unpackMessage(raw);
  const { n, dims } = head;
  const axes = [];
  for (let a = 0; a < dims; a++) {
    const levels = typed(body, a * 2 * n, n, Uint16Array);
    const lo = head.lo[a], step = head.step[a], out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = lo + levels[i] * step;
    axes.push(out);
  }
  return { n, dims, x: axes[0], y: axes[1], z: dims === 3 ? axes[2] : null, lo: head.lo, step: head.step,
    key: head.key, height: head.height, plotly: head.plotly || null, ref: head.ref || null };
}

export function decodeColours(raw) {
  const { head, body } = unpackMessage(raw);
  const n = head.n;
  const codes = typed(body, 0, n, head.code_bytes === 2 ? Uint16Array : Uint8Array);
  let score = null;
  if (head.has_score) {
    const levels = typed(body, n * head.code_bytes, n, Uint8Array);
    score = new Float32Array(n);
    for (let i = 0; i < n; i++) score[i] = levels[i] / 255;
  }
  return { meta: head, codes, score };
}
