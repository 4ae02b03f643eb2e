// The default rules: what pmacct-kafka-vm does without a module, in JavaScript.
//
// A port of transforms/default/src/lib.rs; unedited, it writes the same
// samples and rejects the same records for the same reasons. For each metric
// field (config `metric_fields`, the host's VM_METRIC_NAME / VM_METRICS_NAMES;
// default `bytes`): one sample named after the field, valued by it, stamped
// with `stamp_updated` (UTC), labelled with `job`, `instance` (VM_JOB,
// VM_INSTANCE) and every other field of the record except those in
// `avoid_labels` (VM_AVOID_LABELS; default `bytes,stamp_updated`) and the
// metric fields. A record missing a metric field or `stamp_updated`, or with
// a non-numeric metric, is rejected whole.
//
// With `renormalize=sampling_rate` (RENORMALIZE), pmacct's counters (`bytes`,
// `packets`, `flows`) are multiplied by the record's `sampling_rate`: a rate
// of 0 (unknown) or 1 (already renormalised), or none, leaves them as they are.
//
// Edit `transform` to change what a record becomes; TRANSFORM_CONFIG's
// key=value entries reach the function below in `config` too.

import {
  RecordError, asNumber, exportTransform, field, labelText, numberText, timestampMs,
} from "./pmacct_transform.js";

const TIMESTAMP_FIELD = "stamp_updated";
const SAMPLING_RATE_FIELD = "sampling_rate";
// Labels the host sets itself; a record field of the same name is skipped.
const RESERVED = ["__name__", "job", "instance"];
// pmacct's counters: what its *_renormalize multiplies by the rate.
const COUNTERS = ["bytes", "packets", "flows"];

export const guest = exportTransform((config) => {
  const metrics = config.metricFields();
  const avoid = config.get("avoid_labels") === undefined
    ? ["bytes", "stamp_updated"]
    : config.list("avoid_labels");
  // Fields never written as labels.
  const skip = new Set([...avoid, ...metrics, ...RESERVED]);
  const head = [["job", config.require("job")], ["instance", config.require("instance")]];
  const renormalize = (config.get("renormalize") ?? "").trim();
  if (!["", "none", SAMPLING_RATE_FIELD].includes(renormalize)) {
    throw new Error(`renormalize: ${JSON.stringify(renormalize)} is neither "none" nor "sampling_rate"`);
  }
  return {
    transform(record, out) {
      const ts = timestampMs(record, TIMESTAMP_FIELD);
      const rate = renormalize === SAMPLING_RATE_FIELD ? samplingRate(record) : null;
      // Index loops: the interpreter runs for-of's iterator protocol slowly.
      const labels = head.slice();
      const names = Object.keys(record);
      for (let i = 0; i < names.length; i++) {
        if (!skip.has(names[i])) labels.push([names[i], text(record, names[i])]);
      }
      // out.add refuses a label name a store cannot take (bad_label_name).
      for (let i = 0; i < metrics.length; i++) {
        const name = metrics[i];
        let value = metricText(record, name);
        if (rate !== null && COUNTERS.includes(name)) value = scaled(value, rate, name);
        out.add(name, labels, value, ts);
      }
    },
  };
});

// The rate to multiply counters by: null without `sampling_rate`, or for
// pmacct's 0 (unknown) and 1 (renormalised already).
function samplingRate(record) {
  if (!Object.hasOwn(record, SAMPLING_RATE_FIELD)) return null;
  const r = asNumber(record[SAMPLING_RATE_FIELD]);
  if (r === 0 || r === 1) return null;
  if (r !== null && r > 1 && Number.isInteger(r)) return r;
  throw new RecordError(
    "invalid_sampling_rate",
    `field "${SAMPLING_RATE_FIELD}" = ${text(record, SAMPLING_RATE_FIELD)} is not a whole number of at least 0`,
  );
}

// A counter (its value text) times the rate; exact below 2^53.
function scaled(value, rate, name) {
  const product = Number(value) * rate;
  if (!Number.isFinite(product)) {
    throw new RecordError("non_numeric_value", `field "${name}" times the sampling rate is not a finite number`);
  }
  return f64Text(product);
}

// What the Rust SDK does for these rules that pmacct_transform.js leaves to
// the transform: the same checks, reasons and number texts.

// A field as label text: numbers as written (1.50 stays 1.50).
function text(record, name) {
  return numberText(record, name) ?? labelText(record[name]);
}

// A metric's value text: a JSON number as written, a string holding a
// number as its float.
function metricText(record, name) {
  const v = field(record, name);
  if (typeof v === "number") {
    if (!Number.isFinite(v)) {
      throw new RecordError("bad_number", `field "${name}" = ${text(record, name)} is out of the range of a 64-bit float`);
    }
    return numberText(record, name);
  }
  const f = asNumber(v);
  if (f === null) {
    throw new RecordError("non_numeric_value", `field "${name}" = ${text(record, name)} is not a number`);
  }
  return f64Text(f);
}

// A number as the Rust SDK writes it: whole numbers below 2^53 as integers,
// the rest in ryu's layout of the shortest digits (1e300, 0.00001, 12.5).
function f64Text(f) {
  if (Number.isInteger(f) && Math.abs(f) < 2 ** 53) return String(f);
  const [mantissa, exp] = Math.abs(f).toExponential().split("e");
  const digits = mantissa.replace(".", "");
  const n = digits.length;
  const point = Number(exp) + 1;
  let t;
  if (n <= point && point <= 16) t = digits + "0".repeat(point - n) + ".0";
  else if (point > 0 && point <= 16) t = digits.slice(0, point) + "." + digits.slice(point);
  else if (point > -5 && point <= 0) t = "0." + "0".repeat(-point) + digits;
  else t = digits[0] + (n > 1 ? "." + digits.slice(1) : "") + "e" + (point - 1);
  return f < 0 ? "-" + t : t;
}
