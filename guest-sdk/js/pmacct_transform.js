// Write a pmacct-kafka-vm transform in JavaScript.
//
// The same shape as the Rust and Python SDKs: one function from a parsed
// record to samples, built into a WebAssembly component by jco
// (componentize-js) from contract 2.0, guest-sdk/wit/transform.wit (see
// guest-sdk/js/README.md):
//
//   import { exportTransform, timestampMs, valueText } from "../../../guest-sdk/js/pmacct_transform.js";
//   export const guest = exportTransform((config) => ({
//     transform(record, out) {
//       out.add("bytes", [["job", config.job], ["instance", config.instance]],
//               valueText(record, "bytes"), timestampMs(record, "stamp_updated"));
//     },
//   }));
//
// A record is the object JSON.parse made of the Kafka payload (parsed once).
// Throw new RecordError(reason, detail) for a record that cannot be used: it
// yields no sample and the host counts it under `reason`. Any other exception
// is reported the same way, as `transform_exception`.
//
// Reasons and label texts match the Rust SDK's. A JavaScript number keeps no
// text, so numberText(record, name) gives a number field's text as the
// record wrote it (`1.50` stays `1.50`, as the Rust SDK writes it).

import { log as hostLog, lookup as hostLookup } from "pmacct:transform/host@2.0.0";

export class RecordError extends Error {
  constructor(reason, detail = "") {
    super(`${reason}: ${detail}`);
    this.reason = reason;
    this.detail = detail;
  }
}

export class Config {
  constructor(pairs) {
    this.values = new Map(pairs);
  }
  get(key, fallback = undefined) {
    return this.values.has(key) ? this.values.get(key) : fallback;
  }
  require(key) {
    if (!this.values.has(key)) throw new Error(`configuration key "${key}" is required`);
    return this.values.get(key);
  }
  /** A comma list, trimmed, without empty entries. */
  list(key) {
    return (this.values.get(key) ?? "").split(",").map((s) => s.trim()).filter((s) => s);
  }
  /** The fields that each become one sample (default: bytes). */
  metricFields() {
    const l = this.list("metric_fields");
    return l.length ? l : ["bytes"];
  }
  /** Every entry, as an object of text (a copy). */
  get entries() {
    return Object.fromEntries(this.values);
  }
  /**
   * The entry as a whole number within low..=high (either may be
   * undefined), `fallback` when absent; an Error naming the key when it is
   * not one.
   */
  integer(key, fallback, low = undefined, high = undefined) {
    if (!this.values.has(key)) return fallback;
    const v = this.values.get(key);
    const n = /^\s*[+-]?\d+\s*$/.test(v) ? Number(v) : NaN;
    if (!Number.isSafeInteger(n) || (low !== undefined && n < low) || (high !== undefined && n > high)) {
      throw new Error(`configuration key "${key}" = "${v}": not a whole number in ${low ?? ""}..=${high ?? ""}`);
    }
    return n;
  }
  get job() {
    return this.values.get("job") ?? "";
  }
  get instance() {
    return this.values.get("instance") ?? "";
  }
}

/** One line in the host's log: level is "error", "warn", "info" or "debug". */
export function log(level, message) {
  hostLog(level, message);
}

/**
 * The value at `path` in the entry of the operator's table `table`
 * (ENRICH_TABLES) that holds `address` (an IP address's text), as a string:
 * a MaxMind DB entry's keys dot-separated (`country.iso_code`), a CSV
 * table's column. null when the table is not declared, `address` is no
 * address, no entry holds it, or the entry has no value there. One call
 * into the host; ENRICH_LABELS adds such values as fields instead, with no
 * call.
 */
export function lookup(table, address, path) {
  return hostLookup(table, address, path) ?? null;
}

function kind(v) {
  if (typeof v === "string") return "a string";
  if (typeof v === "boolean") return "a boolean";
  if (typeof v === "number") return "a number";
  if (v === null) return "null";
  return "an object or array";
}

/** The field's value, or RecordError missing_field. */
export function field(record, name) {
  const v = record[name];
  if (v === undefined || !Object.prototype.hasOwnProperty.call(record, name)) {
    throw new RecordError("missing_field", `no field "${name}"`);
  }
  return v;
}

/** A string field, or missing_field / wrong_type. */
export function string(record, name) {
  const v = field(record, name);
  if (typeof v !== "string") {
    throw new RecordError("wrong_type", `field "${name}" is ${kind(v)} where a string was expected`);
  }
  return v;
}

/** A value as a number: JSON numbers and strings holding one; else null. */
export function asNumber(v) {
  if (typeof v === "number") return Number.isFinite(v) ? v : null;
  if (typeof v === "string") {
    const t = v.trim();
    if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t)) return null;
    const f = Number(t);
    return Number.isFinite(f) ? f : null;
  }
  return null;
}

/** A numeric field as a number, or missing_field / non_numeric_value. */
export function number(record, name) {
  const v = field(record, name);
  const f = asNumber(v);
  if (f === null) {
    throw new RecordError("non_numeric_value", `field "${name}" = ${labelText(v)} is not a number`);
  }
  return f;
}

/** A numeric field as the text to write as a sample value. */
export function valueText(record, name) {
  return String(number(record, name));
}

/** A value as a label: strings as they are, anything else as JSON text. */
export function labelText(v) {
  return typeof v === "string" ? v : JSON.stringify(v);
}

const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysFromCivil(y, m, d) {
  // Howard Hinnant's algorithm, as the Rust SDK's time.rs.
  y -= m <= 2 ? 1 : 0;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

function epochMs(text) {
  const m = /^(\d{1,12})(?:\.(\d*))?$/.exec(text);
  if (!m) return null;
  return Number(m[1]) * 1000 + Number(((m[2] ?? "") + "000").slice(0, 3));
}

const STAMP = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?$/;

function stampMs(s) {
  const m = STAMP.exec(s);
  if (!m) return s.length >= 19 && s[4] === "-" ? null : epochMs(s);
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map(Number);
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  if (mo < 1 || mo > 12) return null;
  const dim = mo === 2 && leap ? 29 : DAYS[mo - 1];
  if (d < 1 || d > dim || h > 23 || mi > 59 || sec > 60) return null;
  const ms = m[7] ? Number((m[7] + "000").slice(0, 3)) : 0;
  return ((daysFromCivil(y, mo, d) * 24 + h) * 60 + mi) * 60000 + sec * 1000 + ms;
}

const STAMPS = new Map();

/** pmacct's 'YYYY-MM-DD HH:MM:SS' (UTC) or epoch seconds, in milliseconds. */
export function timestampMs(record, name) {
  const v = field(record, name);
  let ms = null;
  if (typeof v === "string") {
    // pmacct stamps every record of a purge alike: read each text once.
    ms = STAMPS.get(v);
    if (ms === undefined) {
      ms = stampMs(v);
      if (STAMPS.size >= 4096) STAMPS.clear();
      STAMPS.set(v, ms);
    }
  }
  else if (typeof v === "number" && v >= 0) ms = epochMs(numberText(record, name));
  if (ms === null) {
    throw new RecordError(
      "invalid_timestamp",
      `field "${name}" = ${labelText(v)} is neither 'YYYY-MM-DD HH:MM:SS' nor epoch seconds`,
    );
  }
  return ms;
}

// IPv6 addresses as BigInt, masked, and written the way Rust's std writes them.
function parseV4(s) {
  const p = s.split(".");
  if (p.length !== 4 || !p.every((x) => /^\d{1,3}$/.test(x) && Number(x) < 256)) return null;
  return p.reduce((a, x) => (a << 8n) | BigInt(x), 0n);
}

function parseV6(s) {
  if (!/^[0-9a-fA-F:.]+$/.test(s)) return null;
  let tail = [];
  const v4 = s.match(/^(.*:)(\d+\.\d+\.\d+\.\d+)$/);
  if (v4) {
    const n = parseV4(v4[2]);
    if (n === null) return null;
    s = v4[1] + "0:0";
    tail = [Number((n >> 16n) & 0xffffn), Number(n & 0xffffn)];
  }
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const group = (h) => (h === "" ? [] : h.split(":"));
  const head = group(halves[0]);
  const rest = halves.length === 2 ? group(halves[1]) : [];
  const missing = 8 - head.length - rest.length;
  if ((halves.length === 2 && missing < 1) || (halves.length === 1 && missing !== 0)) return null;
  const all = [...head, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...rest];
  if (!all.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return null;
  const words = all.map((g) => parseInt(g, 16));
  if (tail.length) words.splice(6, 2, ...tail);
  return words.reduce((a, w) => (a << 16n) | BigInt(w), 0n);
}

function formatV6(n) {
  const w = [];
  for (let i = 7; i >= 0; i--) w.push(Number((n >> BigInt(i * 16)) & 0xffffn));
  // RFC 5952: the longest run of two or more zero groups becomes "::".
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = (a) => a.map((x) => x.toString(16)).join(":");
  if (best < 0) return hex(w);
  return hex(w.slice(0, best)) + "::" + hex(w.slice(best + bestLen));
}

const V4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/**
 * The network of an address text, written as Rust's std writes it
 * ("10.1.2.0/24", "2001:db8::/64"): an IPv4 address's first `bitsV4` bits,
 * an IPv6 address's first `bitsV6`; null when `text` is neither (leading
 * zeros in IPv4 included, as Rust rejects them). IPv4 is read by one
 * regular expression (in the interpreter, cheaper than a loop over its
 * characters) and masked as a 32-bit number, with no BigInt.
 */
export function network(text, bitsV4, bitsV6) {
  const m = V4.exec(text);
  if (m !== null) {
    const mask = bitsV4 === 0 ? 0 : (0xffffffff << (32 - bitsV4)) >>> 0;
    const a = ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) & mask;
    return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}/${bitsV4}`;
  }
  const a6 = parseV6(text);
  if (a6 === null) return null;
  const masked = bitsV6 === 0 ? 0n : (a6 >> BigInt(128 - bitsV6)) << BigInt(128 - bitsV6);
  return `${formatV6(masked)}/${bitsV6}`;
}

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const DIGITS = /^\d{1,15}$/;

/** A sample's value as the Rust SDK reads it: a finite number. */
function sampleValue(value) {
  if (typeof value === "number") {
    if (Number.isFinite(value)) return value;
  } else if (typeof value === "string") {
    if (DIGITS.test(value)) return Number(value);
    const f = DECIMAL.test(value) ? Number(value) : NaN;
    if (Number.isFinite(f)) return f;
  } else {
    throw new TypeError(`a sample value is a number, not ${kind(value)}`);
  }
  throw new RecordError("non_numeric_value", `${JSON.stringify(String(value))} is not a number (a sample's value)`);
}

const LABEL_NAME = /^(?!__)[A-Za-z_][A-Za-z0-9_]*$/;
// Label names seen to be good: checked once each, not once a sample.
const NAMES_OK = new Set();

function checkName(name) {
  if (typeof name !== "string" || !LABEL_NAME.test(name)) {
    throw new RecordError(
      "bad_label_name",
      `${JSON.stringify(String(name))} cannot be a label name: a label name is [a-zA-Z_][a-zA-Z0-9_]* and does not start with __`,
    );
  }
  if (NAMES_OK.size < 65536) NAMES_OK.add(name);
}

/**
 * The samples of one chunk, as the contract's structure: a table of strings
 * (each sample's name, then its label names and values), where each
 * sample's strings end, and its value and timestamp.
 */
export class Samples {
  constructor() {
    this.strings = [];
    this.seriesEnds = [];
    this.values = [];
    this.timestamps = [];
  }
  get count() {
    return this.values.length;
  }
  /**
   * One sample: labels are [name, string] pairs; value a number or its
   * text. A label name must be [a-zA-Z_][a-zA-Z0-9_]* and not start with
   * __; any other rejects the record (`bad_label_name`), as a text that is
   * not a number does (`non_numeric_value`).
   */
  add(name, labels, value, timestampMs) {
    const v = sampleValue(value);
    const ts = Math.trunc(timestampMs);
    if (!Number.isSafeInteger(ts)) {
      throw new RecordError("invalid_timestamp", `${timestampMs} is not a whole number of milliseconds`);
    }
    const strings = this.strings;
    const start = strings.length;
    if (typeof name !== "string") throw new TypeError(`a sample name is a string, not ${kind(name)}`);
    strings.push(name);
    // An index loop: an interpreter runs for-of's iterator protocol slowly.
    const pairs = Array.isArray(labels) ? labels : Array.from(labels);
    for (let i = 0; i < pairs.length; i++) {
      const k = pairs[i][0];
      const text = pairs[i][1];
      if (!NAMES_OK.has(k)) {
        try {
          checkName(k);
        } catch (e) {
          strings.length = start;
          throw e;
        }
      }
      if (typeof text !== "string") {
        strings.length = start;
        throw new TypeError(`label "${k}": a label value is a string, not ${kind(text)}`);
      }
      strings.push(k, text);
    }
    this.seriesEnds.push(strings.length);
    this.values.push(v);
    this.timestamps.push(ts);
  }
  truncate(strings, points) {
    this.strings.length = strings;
    this.seriesEnds.length = points;
    this.values.length = points;
    this.timestamps.length = points;
  }
}

/**
 * The contract's chunk-output of `out`. The strings are one text: when it
 * is ASCII (its UTF-8 is as long as it is) a string's bytes are its length.
 * Null when a string holds a lone surrogate.
 */
function lower({ out, errors }) {
  const strings = out.strings;
  const n = strings.length;
  const stringEnds = new Uint32Array(n);
  const text = encoder.encode(strings.join(""));
  let end = 0;
  if (text.length === end + strings.reduce((a, s) => a + s.length, 0)) {
    for (let i = 0; i < n; i++) stringEnds[i] = end += strings[i].length;
  } else {
    for (let i = 0; i < n; i++) {
      // Each string on its own: two halves of a pair split across two
      // strings are well-formed joined, and lone in each.
      if (!strings[i].isWellFormed()) return null;
      stringEnds[i] = end += encoder.encode(strings[i]).length;
    }
  }
  const points = out.values.length;
  const pointSeries = new Uint32Array(points);
  for (let i = 0; i < points; i++) pointSeries[i] = i;
  // s64 crosses as a BigInt: each timestamp (a safe integer) is written as
  // two 32-bit halves instead, with no BigInt made.
  const timestamps = new BigInt64Array(points);
  const halves = new Int32Array(timestamps.buffer);
  for (let i = 0; i < points; i++) {
    const t = out.timestamps[i];
    const high = Math.floor(t / 4294967296);
    halves[2 * i] = t - high * 4294967296;
    halves[2 * i + 1] = high;
  }
  return {
    samples: {
      text,
      stringEnds,
      seriesEnds: Uint32Array.from(out.seriesEnds),
      pointSeries,
      values: Float64Array.from(out.values),
      timestamps,
    },
    errors,
  };
}

const decoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

// The text of each number JSON.parse read whose String() differs from it
// (`1.50`, `1e3`, `-0`, integers past 2^53): object -> key -> text.
const numberTexts = new WeakMap();

// A field's number String() may not give back (a fraction, an exponent, 16
// digits or more, -0): only a record with one pays for the reviver.
const MAYBE_INEXACT = /:\s*(?:-?\d+[.eE]|-?\d{16}|-0)/;

function keepNumberText(key, value, context) {
  if (typeof value === "number" && context !== undefined && context.source !== String(value)) {
    let texts = numberTexts.get(this);
    if (texts === undefined) numberTexts.set(this, (texts = new Map()));
    texts.set(key, context.source);
  }
  return value;
}

// The record being transformed and its text. Numbers' texts are found only
// when a transform first asks for one: the scan for them costs more, in
// the interpreter, than the parse itself.
let current = null;
let currentText = "";
let textsFound = false;

function findTexts() {
  textsFound = true;
  if (!MAYBE_INEXACT.test(currentText)) return;
  link(current, JSON.parse(currentText, keepNumberText));
}

// Gives each object of `record` the texts found for its twin in `shadow`
// (the same text parsed again, with the reviver).
function link(record, shadow) {
  const texts = numberTexts.get(shadow);
  if (texts !== undefined) numberTexts.set(record, texts);
  for (const key of Object.keys(record)) {
    const v = record[key];
    const w = shadow[key];
    if (v !== null && typeof v === "object" && w !== null && typeof w === "object") link(v, w);
  }
}

/**
 * A number field's text as the record wrote it (`1.50` stays `1.50`), as the
 * Rust SDK writes it as a label or sample value; undefined if not a number.
 * Known for the record being transformed (and the objects in it).
 */
export function numberText(record, name) {
  const v = record[name];
  if (typeof v !== "number") return undefined;
  if (!textsFound && current !== null) findTexts();
  return numberTexts.get(record)?.get(name) ?? String(v);
}

function parse(bytes) {
  let record;
  current = null;
  try {
    const text = decoder.decode(bytes);
    record = JSON.parse(text);
    currentText = text;
  } catch (e) {
    throw new RecordError("invalid_json", String(e && e.message ? e.message : e));
  }
  if (record === null || typeof record !== "object" || Array.isArray(record)) {
    throw new RecordError("not_an_object", "the record is not a JSON object");
  }
  current = record;
  textsFound = false;
  return record;
}

/** Each record through `impl`, into one Samples; `check`: reject a record
 * whose strings are not well-formed UTF-16. */
function run(impl, records, ends, check) {
  const out = new Samples();
  const errors = [];
  let start = 0;
  for (let i = 0; i < ends.length; i++) {
    const end = ends[i];
    const strings = out.strings.length;
    const points = out.values.length;
    try {
      if (impl === null) throw new RecordError("not_initialised", "init was not called");
      impl.transform(parse(records.subarray(start, end)), out);
      if (check && !wellFormed(out.strings, strings)) {
        throw new RecordError("transform_bad_output", "a name or label value holds a lone surrogate, which has no UTF-8");
      }
    } catch (e) {
      // A record yields all its samples or none.
      out.truncate(strings, points);
      if (e instanceof RecordError) {
        errors.push({ index: i, reason: e.reason, detail: e.detail });
      } else {
        errors.push({ index: i, reason: "transform_exception", detail: String(e) });
      }
    }
    start = end;
  }
  return { out, errors };
}

function wellFormed(strings, from) {
  for (let i = from; i < strings.length; i++) if (!strings[i].isWellFormed()) return false;
  return true;
}

/**
 * The `guest` export for a transform: `make(config)` reads the configuration
 * (throw to reject it) and returns an object with `transform(record, out)`.
 */
export function exportTransform(make) {
  let impl = null;
  return {
    init(pairs) {
      try {
        impl = make(new Config(pairs));
      } catch (e) {
        // A thrown string is init's error text; anything else would trap.
        throw String(e?.message ?? e);
      }
    },
    transform(records, ends) {
      // A string with a lone surrogate has no UTF-8 (TextEncoder would
      // write U+FFFD in its place, silently): `lower` declines such a
      // chunk, which then runs again, checking each record's strings, so
      // that only the records that wrote one are rejected.
      return lower(run(impl, records, ends, false)) ?? lower(run(impl, records, ends, true));
    },
  };
}
