// Write a pmacct-kafka-vm transform in JavaScript.
//
// The same shape as the Rust and Python SDKs: one function from a parsed
// record to samples, built into a WebAssembly component by jco
// (componentize-js) from contract 1.0, guest-sdk/wit-1.0/transform.wit (see
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

import { log as hostLog } from "pmacct:transform/host@1.0.0";

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

/** pmacct's 'YYYY-MM-DD HH:MM:SS' (UTC) or epoch seconds, in milliseconds. */
export function timestampMs(record, name) {
  const v = field(record, name);
  let ms = null;
  if (typeof v === "string") ms = stampMs(v);
  else if (typeof v === "number" && v >= 0) ms = epochMs(numberText(record, name));
  if (ms === null) {
    throw new RecordError(
      "invalid_timestamp",
      `field "${name}" = ${labelText(v)} is neither 'YYYY-MM-DD HH:MM:SS' nor epoch seconds`,
    );
  }
  return ms;
}

const quote = (s) => JSON.stringify(s);

/** The samples of one chunk, written straight as import lines. */
export class Samples {
  constructor() {
    this.lines = [];
    this.count = 0;
  }
  /** One sample: labels are [name, string] pairs; value a number or text. */
  add(name, labels, value, timestampMs) {
    let line = '{"metric":{"__name__":' + quote(name);
    for (const [k, v] of labels) line += "," + quote(k) + ":" + quote(v);
    line += '},"values":[' + String(value) + '],"timestamps":[' + Math.trunc(timestampMs) + "]}\n";
    this.lines.push(line);
    this.count += 1;
  }
}

const decoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

// The text of each number JSON.parse read whose String() differs from it
// (`1.50`, `1e3`, `-0`, integers past 2^53): object -> key -> text.
const numberTexts = new WeakMap();

// A field's number String() may not give back (a fraction, an exponent, 16
// digits or more, -0): only a record with one pays for the reviver.
const MAYBE_INEXACT = /:\s*-?\d+[.eE]|:\s*-?\d{16}|:\s*-0/;

function keepNumberText(key, value, context) {
  if (typeof value === "number" && context !== undefined && context.source !== String(value)) {
    let texts = numberTexts.get(this);
    if (texts === undefined) numberTexts.set(this, (texts = new Map()));
    texts.set(key, context.source);
  }
  return value;
}

/**
 * A number field's text as the record wrote it (`1.50` stays `1.50`), as the
 * Rust SDK writes it as a label or sample value; undefined if not a number.
 */
export function numberText(record, name) {
  const v = record[name];
  if (typeof v !== "number") return undefined;
  return numberTexts.get(record)?.get(name) ?? String(v);
}

function parse(bytes) {
  let record;
  try {
    const text = decoder.decode(bytes);
    record = MAYBE_INEXACT.test(text) ? JSON.parse(text, keepNumberText) : JSON.parse(text);
  } catch (e) {
    throw new RecordError("invalid_json", String(e && e.message ? e.message : e));
  }
  if (record === null || typeof record !== "object" || Array.isArray(record)) {
    throw new RecordError("not_an_object", "the record is not a JSON object");
  }
  return record;
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
      const out = new Samples();
      const errors = [];
      let start = 0;
      for (let i = 0; i < ends.length; i++) {
        const end = ends[i];
        const mark = out.lines.length;
        const count = out.count;
        try {
          if (impl === null) throw new RecordError("not_initialised", "init was not called");
          impl.transform(parse(records.subarray(start, end)), out);
        } catch (e) {
          // A record yields all its samples or none.
          out.lines.length = mark;
          out.count = count;
          if (e instanceof RecordError) {
            errors.push({ index: i, reason: e.reason, detail: e.detail });
          } else {
            errors.push({ index: i, reason: "transform_exception", detail: String(e) });
          }
        }
        start = end;
      }
      return { body: encoder.encode(out.lines.join("")), samples: out.count, errors };
    },
  };
}
