"""The default rules: what pmacct-kafka-vm does without a module, in Python.

A port of transforms/default/src/lib.rs; unedited, it writes the same samples
and rejects the same records for the same reasons. For each metric field
(config `metric_fields`, the host's VM_METRIC_NAME / VM_METRICS_NAMES; default
`bytes`): one sample named after the field, valued by it, stamped with
`stamp_updated` (UTC), labelled with `job`, `instance` (VM_JOB, VM_INSTANCE)
and every other field of the record except those in `avoid_labels`
(VM_AVOID_LABELS; default `bytes,stamp_updated`) and the metric fields. A
record missing a metric field or `stamp_updated`, or with a non-numeric
metric, is rejected whole.

With `renormalize=sampling_rate` (RENORMALIZE), pmacct's counters (`bytes`,
`packets`, `flows`) are multiplied by the record's `sampling_rate`: a rate of
0 (unknown) or 1 (already renormalised), or none, leaves them as they are.

Edit `transform` to change what a record becomes; TRANSFORM_CONFIG's
key=value entries reach `__init__` in `config` too.
"""

import json
import math
import re

from pmacct_transform import RecordError, Transform, export, field, label_text, timestamp_ms

TIMESTAMP_FIELD = "stamp_updated"
SAMPLING_RATE_FIELD = "sampling_rate"
# Labels the host sets itself; a record field of the same name is skipped.
RESERVED = ("__name__", "job", "instance")
# pmacct's counters: what its *_renormalize multiplies by the rate.
COUNTERS = ("bytes", "packets", "flows")


class DefaultRules(Transform):
    def __init__(self, config):
        self.metrics = config.metric_fields()
        avoid = config.list("avoid_labels")
        if config.get("avoid_labels") is None:
            avoid = ["bytes", "stamp_updated"]
        # Fields never written as labels.
        self.skip = set(avoid) | set(self.metrics) | set(RESERVED)
        self.head = [("job", config.require("job")), ("instance", config.require("instance"))]
        renormalize = config.get("renormalize", "").strip()
        if renormalize not in ("", "none", SAMPLING_RATE_FIELD):
            raise ValueError(
                f'renormalize: {quoted(renormalize)} is neither "none" nor "sampling_rate"'
            )
        self.renormalize = renormalize == SAMPLING_RATE_FIELD

    def transform(self, record, out):
        ts = timestamp_ms(record, TIMESTAMP_FIELD)
        rate = sampling_rate(record) if self.renormalize else None
        labels = self.head + [(k, label_text(v)) for k, v in record.items() if k not in self.skip]
        for name in self.metrics:
            value = number_text(record, name)
            if rate is not None and name in COUNTERS:
                value = scaled(value, rate, name)
            # out.add refuses a label name a store cannot take (bad_label_name).
            out.add(name, labels, value, ts)


def sampling_rate(record):
    """The rate to multiply counters by: None without `sampling_rate`, or
    for pmacct's 0 (unknown) and 1 (renormalised already)."""
    if SAMPLING_RATE_FIELD not in record:
        return None
    v = record[SAMPLING_RATE_FIELD]
    r = as_f64(v)
    if r == 0 or r == 1:
        return None
    if r is not None and r > 1 and r.is_integer():
        return r
    raise RecordError(
        "invalid_sampling_rate",
        f'field "{SAMPLING_RATE_FIELD}" = {label_text(v)} is not a whole number of at least 0',
    )


def scaled(value, rate, name):
    """A counter (its value text) times the rate; exact below 2^53."""
    product = float(value) * rate
    if not math.isfinite(product):
        raise RecordError(
            "non_numeric_value", f'field "{name}" times the sampling rate is not a finite number'
        )
    return f64_text(product)


# What the Rust SDK does for these rules that pmacct_transform leaves to the
# transform: the same checks, reasons and number texts.

DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def as_f64(v):
    """A JSON number, or a string holding a decimal number, as a float;
    None for anything else and for what no 64-bit float holds."""
    if isinstance(v, str):
        v = v.strip()
        if not DECIMAL.fullmatch(v):
            return None
    elif isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def number_text(record, name):
    """A metric's value text: a JSON number as written (1.50 stays 1.50), a
    string holding a number as its float."""
    v = field(record, name)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if as_f64(v) is None:
            raise RecordError(
                "bad_number",
                f'field "{name}" = {label_text(v)} is out of the range of a 64-bit float',
            )
        return label_text(v)
    f = as_f64(v)
    if f is None:
        raise RecordError("non_numeric_value", f'field "{name}" = {label_text(v)} is not a number')
    return f64_text(f)


def f64_text(f):
    """A float as the Rust SDK writes it: whole numbers below 2^53 as
    integers, the rest in ryu's layout of the shortest digits (1e300,
    0.00001, 12.5)."""
    if f.is_integer() and abs(f) < 2**53:
        return str(int(f))
    mantissa, _, exp = repr(abs(f)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    point = len(whole) + int(exp or 0) - (len(whole + frac) - len(digits))
    digits = digits.rstrip("0")
    n = len(digits)
    if n <= point <= 16:
        text = digits + "0" * (point - n) + ".0"
    elif 0 < point <= 16:
        text = digits[:point] + "." + digits[point:]
    elif -5 < point <= 0:
        text = "0." + "0" * -point + digits
    else:
        text = digits[0] + ("." + digits[1:] if n > 1 else "") + "e" + str(point - 1)
    return "-" + text if f < 0 else text


def quoted(s):
    """A name in double quotes, as the Rust SDK's messages write it."""
    return json.dumps(s, ensure_ascii=False)


Guest = export(DefaultRules)
