"""Write a pmacct-kafka-vm transform in Python.

The same shape as the Rust SDK: one method from a parsed record to samples.
The module is built into a WebAssembly component by componentize-py from the
contract 2.0, guest-sdk/wit/transform.wit (see guest-sdk/python/README.md):

    from pmacct_transform import Transform, export, timestamp_ms, value_text

    class Bytes(Transform):
        def __init__(self, config):
            self.job, self.instance = config.job, config.instance

        def transform(self, record, out):
            out.add("bytes", [("job", self.job), ("instance", self.instance)],
                    value_text(record, "bytes"), timestamp_ms(record, "stamp_updated"))

    Guest = export(Bytes)

A record is the dict json.loads made of the Kafka payload (parsed once). A
record the transform cannot use raises RecordError(reason, detail): it yields
no sample, and the host counts it under `reason` and logs (or dead-letters)
it. Any other exception is reported the same way, as `transform_exception`,
so a bug rejects its records instead of the whole chunk.

The reasons and the label text of values match the Rust SDK's, so a port of
a Rust transform writes the same samples.
"""

import ipaddress
import json
import math
import re
from itertools import accumulate as _accumulate

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.guest import ChunkOutput
from wit_world.exports.guest import RecordError as _WitRecordError
from wit_world.exports.guest import Samples as _WitSamples
from wit_world.imports import host

__all__ = [
    "Config",
    "RecordError",
    "Samples",
    "Transform",
    "as_number",
    "export",
    "field",
    "label_text",
    "log",
    "lookup",
    "network",
    "number",
    "string",
    "timestamp_ms",
    "value_text",
]


class RecordError(Exception):
    """Why a record yields no samples: a short snake_case reason (a label of
    the host's record_errors_total) and free text for the log."""

    def __init__(self, reason, detail=""):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class _Num(float):
    """A JSON float that remembers its text, so it is written back exactly
    as pmacct wrote it (1.50 stays 1.50), as the Rust SDK does."""

    __slots__ = ("text",)

    def __new__(cls, text):
        n = float.__new__(cls, text)
        n.text = text
        return n


# One decoder for every record: json.loads with an argument builds a new
# one (and its scanner) a call.
_DECODER = json.JSONDecoder(parse_float=_Num)
_scan = _DECODER.scan_once


def _parse(payload):
    try:
        text = payload.decode()
        try:
            record, end = _scan(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
            # Leading or trailing white space, or an error to describe.
            record = _DECODER.decode(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise RecordError("invalid_json", str(e)) from None
    if type(record) is not dict:
        raise RecordError("not_an_object", "the record is not a JSON object")
    return record


class Config:
    """The operator's configuration, as the host passed it to `init`."""

    def __init__(self, pairs):
        self._values = dict(pairs)

    def get(self, key, default=None):
        return self._values.get(key, default)

    def require(self, key):
        if key not in self._values:
            raise ValueError(f'configuration key "{key}" is required')
        return self._values[key]

    def list(self, key):
        """A comma list, trimmed, without empty entries."""
        return [x.strip() for x in self._values.get(key, "").split(",") if x.strip()]

    def metric_fields(self):
        """The fields that each become one sample (default: bytes)."""
        return self.list("metric_fields") or ["bytes"]

    @property
    def entries(self):
        """Every entry, as a dict of text (a copy)."""
        return dict(self._values)

    def integer(self, key, default, low=None, high=None):
        """The entry as a whole number within low..=high (either may be
        None), `default` when absent; a ValueError naming the key when it
        is not one."""
        v = self._values.get(key)
        if v is None:
            return default
        text = v.strip()
        n = int(text) if text.lstrip("+-").isdigit() else None
        if n is None or (low is not None and n < low) or (high is not None and n > high):
            within = f"{'' if low is None else low}..={'' if high is None else high}"
            raise ValueError(f'configuration key "{key}" = "{v}": not a whole number in {within}')
        return n

    @property
    def job(self):
        return self._values.get("job", "")

    @property
    def instance(self):
        return self._values.get("instance", "")


def log(level, message):
    """One line in the host's log: level is "error", "warn", "info" or "debug"."""
    host.log(host.Level[level.upper()], message)


def lookup(table, address, path):
    """The value at `path` in the entry of the operator's table `table`
    (ENRICH_TABLES) that holds `address` (an IP address's text), as a
    string: a MaxMind DB entry's keys dot-separated (`country.iso_code`),
    a CSV table's column. None when the table is not declared, `address`
    is no address, no entry holds it, or the entry has no value there. One
    call into the host; ENRICH_LABELS adds such values as fields instead,
    with no call."""
    return host.lookup(table, address, path)


# Record helpers: the Rust SDK's getters, with its reasons.


def _kind(v):
    if isinstance(v, str):
        return "a string"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if v is None:
        return "null"
    return "an object or array"


def field(record, name):
    """The field's value, or RecordError missing_field."""
    try:
        return record[name]
    except KeyError:
        raise RecordError("missing_field", f'no field "{name}"') from None


def string(record, name):
    """A string field, or missing_field / wrong_type."""
    v = record.get(name)
    if type(v) is str:
        return v
    v = field(record, name)
    if not isinstance(v, str):
        raise RecordError(
            "wrong_type", f'field "{name}" is {_kind(v)} where a string was expected'
        )
    return v


def as_number(v):
    """A value as a float: JSON numbers and strings holding one; else None."""
    t = type(v)
    if t is int or t is _Num or t is float:
        return float(v)
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            f = float(v.strip())
        except ValueError:
            return None
        return f if f == f and f not in (float("inf"), float("-inf")) else None
    return None


def number(record, name):
    """A numeric field (a JSON number or a string holding one), as a float."""
    v = field(record, name)
    f = as_number(v)
    if f is None:
        raise RecordError(
            "non_numeric_value", f'field "{name}" = {label_text(v)} is not a number'
        )
    return f


def value_text(record, name):
    """A numeric field as the text to write as a sample value: JSON numbers
    exactly as written, numeric strings as their float."""
    v = record.get(name)
    if type(v) is int:
        return str(v)
    v = field(record, name)
    if isinstance(v, bool):
        pass
    elif isinstance(v, int):
        return str(v)
    elif isinstance(v, _Num):
        return v.text
    f = as_number(v)
    if f is None:
        raise RecordError(
            "non_numeric_value", f'field "{name}" = {label_text(v)} is not a number'
        )
    return repr(f)


def label_text(v):
    """A value as a label: strings as they are, anything else as its JSON text."""
    if isinstance(v, str):
        return v
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, _Num):
        return v.text
    return json.dumps(v, separators=(",", ":"))


def _days_from_civil(y, m, d):
    # Howard Hinnant's algorithm, as the Rust SDK's time.rs.
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _epoch_ms(text):
    whole, _, frac = text.partition(".")
    if not whole or len(whole) > 12 or not whole.isdigit() or (frac and not frac.isdigit()):
        return None
    return int(whole) * 1000 + int((frac + "000")[:3])


def _stamp_ms(s):
    if len(s) >= 19 and s[4] == "-" and s[7] == "-" and s[10] in " T":
        if s[13] != ":" or s[16] != ":":
            return None
        parts = (s[0:4], s[5:7], s[8:10], s[11:13], s[14:16], s[17:19])
        if not all(p.isdigit() and p.isascii() for p in parts):
            return None
        y, mo, d, h, mi, sec = (int(p) for p in parts)
        leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
        if not 1 <= mo <= 12:
            return None
        days_in_month = 29 if (mo == 2 and leap) else _DAYS[mo - 1]
        if not 1 <= d <= days_in_month or h > 23 or mi > 59 or sec > 60:
            return None
        rest = s[19:]
        if rest == "":
            ms = 0
        elif rest[0] == "." and len(rest) > 1 and rest[1:].isdigit() and rest.isascii():
            ms = int((rest[1:] + "000")[:3])
        else:
            return None
        days = _days_from_civil(y, mo, d)
        return ((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + ms
    return _epoch_ms(s)


_STAMPS = {}


def timestamp_ms(record, name):
    """pmacct's 'YYYY-MM-DD HH:MM:SS' (UTC, optional fraction) or epoch
    seconds (number or string), in milliseconds."""
    v = field(record, name)
    if type(v) is str:
        # pmacct stamps every record of a purge alike: read each text once.
        ms = _STAMPS.get(v)
        if ms is None:
            ms = _stamp_ms(v)
            if len(_STAMPS) >= 4096:
                _STAMPS.clear()
            _STAMPS[v] = ms
    elif isinstance(v, str):
        ms = _stamp_ms(v)
    elif isinstance(v, bool):
        ms = None
    elif isinstance(v, int):
        ms = _epoch_ms(str(v))
    elif isinstance(v, _Num):
        ms = _epoch_ms(v.text)
    else:
        ms = None
    if ms is None:
        raise RecordError(
            "invalid_timestamp",
            f"field \"{name}\" = {label_text(v)} is neither 'YYYY-MM-DD HH:MM:SS' nor epoch seconds",
        )
    return ms


_V4 = re.compile(r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\Z")
_V4_MASKS = {}
_V4_WHOLE = {8: (1, ".0.0.0/8"), 16: (2, ".0.0/16"), 24: (3, ".0/24"), 32: (4, "/32")}


def network(text, bits_v4, bits_v6):
    """The network of an address text, written as Rust's std writes it
    ("10.1.2.0/24", "2001:db8::/64"): the IPv4 address's first `bits_v4`
    bits, an IPv6 address's first `bits_v6`. None when `text` is neither
    (leading zeros in IPv4 included, as Rust rejects them). IPv4 is read
    by one regular expression, not by `ipaddress`, which costs ten times
    more in a module."""
    m = _V4.match(text)
    if m is not None:
        whole = _V4_WHOLE.get(bits_v4)
        if whole is not None:
            # A prefix of whole octets is the text up to its last one.
            return text[: m.end(whole[0])] + whole[1]
        masks = _V4_MASKS.get(bits_v4)
        if masks is None:
            mask = (0xFFFFFFFF << (32 - bits_v4)) & 0xFFFFFFFF
            masks = _V4_MASKS[bits_v4] = (mask >> 24, (mask >> 16) & 255, (mask >> 8) & 255, mask & 255)
        a, b, c, d = m.groups()
        return f"{int(a) & masks[0]}.{int(b) & masks[1]}.{int(c) & masks[2]}.{int(d) & masks[3]}/{bits_v4}"
    if ":" not in text:
        return None
    try:
        ip = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    return str(ipaddress.IPv6Network((ip, bits_v6), strict=False))


class Samples:
    """The samples of one chunk, as the contract's structure: a table of
    strings (each sample's name, then its label names and values), where
    each sample's strings end, and its value and timestamp."""

    __slots__ = ("_strings", "_series_ends", "_values", "_timestamps")

    def __init__(self):
        self._strings = []
        self._series_ends = []
        self._values = []
        self._timestamps = []

    @property
    def count(self):
        return len(self._values)

    def add(self, name, labels, value, timestamp_ms):
        """One sample: `labels` is an iterable of (name, string) pairs,
        `value` a number or the text value_text() gave. A label name must be
        [a-zA-Z_][a-zA-Z0-9_]* and not start with __; any other rejects the
        record (`bad_label_name`), as a text that is not a number does
        (`non_numeric_value`)."""
        t = type(value)
        if t is str:
            # Whole numbers, the counters of flow records, are read by float
            # as they are; the rest is checked as the Rust SDK reads it.
            value = float(value) if value.isdigit() and value.isascii() else _text_value(value)
        elif t is int or t is float or t is _Num:
            value = float(value)
        else:
            raise TypeError(f"a sample value is a number, not {t.__name__}")
        if type(timestamp_ms) is not int or not _MIN_TS <= timestamp_ms <= _MAX_TS:
            timestamp_ms = _timestamp(timestamp_ms)
        strings = self._strings
        start = len(strings)
        append = strings.append
        append(name)
        # A loop costs less than extend(chain(...)) in CPython 3.11+.
        for k, v in labels:
            if k not in _NAMES_OK:
                _check_name(k, strings, start)
            append(k)
            append(v)
        self._series_ends.append(len(strings))
        self._values.append(value)
        self._timestamps.append(timestamp_ms)

    def _truncate(self, mark):
        strings, points = mark
        del self._strings[strings:]
        del self._series_ends[points:]
        del self._values[points:]
        del self._timestamps[points:]


_MIN_TS, _MAX_TS = -(2**63), 2**63 - 1
_LABEL_NAME = re.compile(r"(?!__)[A-Za-z_][A-Za-z0-9_]*\Z")
# Label names seen to be good: checked once each, not once a sample.
_NAMES_OK = set()


def _check_name(name, strings, start):
    if type(name) is not str or not _LABEL_NAME.match(name):
        del strings[start:]
        raise RecordError(
            "bad_label_name",
            f"{json.dumps(name, ensure_ascii=False)} cannot be a label name: a label name "
            "is [a-zA-Z_][a-zA-Z0-9_]* and does not start with __",
        )
    if len(_NAMES_OK) < 65536:
        _NAMES_OK.add(name)


def _text_value(text):
    """A value's text as the Rust SDK reads it: a finite number or
    non_numeric_value."""
    try:
        f = float(text)
    except ValueError:
        f = math.nan
    if math.isfinite(f) and "_" not in text and text == text.strip():
        return f
    raise RecordError("non_numeric_value", f"{json.dumps(text, ensure_ascii=False)} is not a number (a sample's value)")


def _timestamp(ms):
    if isinstance(ms, bool) or not isinstance(ms, (int, float)):
        raise TypeError(f"a timestamp is a whole number of milliseconds, not {type(ms).__name__}")
    ms = int(ms)
    if not _MIN_TS <= ms <= _MAX_TS:
        raise RecordError("invalid_timestamp", f"{ms} ms is out of the range of a 64-bit timestamp")
    return ms


def _lower(out, errors):
    """The contract's chunk-output of `out`, or None when a label value is
    not a string. The strings are one text: when it is ASCII a string's
    bytes are its characters and every end is found without a loop in
    Python."""
    strings = out._strings
    try:
        text = "".join(strings)
    except TypeError:
        return None
    if text.isascii():
        data = text.encode()
        string_ends = list(_accumulate(map(len, strings)))
    else:
        parts = [s.encode("utf-8", "surrogatepass") for s in strings]
        data = b"".join(parts)
        string_ends = list(_accumulate(map(len, parts)))
    n = len(out._values)
    samples = _WitSamples(
        data, string_ends, out._series_ends, list(range(n)), out._values, out._timestamps
    )
    return ChunkOutput(samples, errors)


class Transform:
    """Subclass it: `__init__(self, config)` reads the configuration (raise
    ValueError to reject it) and `transform(self, record, out)` adds the
    record's samples to `out` or raises RecordError."""

    def __init__(self, config):
        pass

    def transform(self, record, out):
        raise NotImplementedError


def _run(impl, records, ends, each):
    """One chunk through `impl`. With `each`, a record whose label values
    are not all strings is rejected too (a check `add` leaves to the end of
    the chunk, where it costs one join)."""
    out = Samples()
    errors = []
    start = 0
    strings = out._strings
    values = out._values
    for i, end in enumerate(ends):
        mark = len(strings), len(values)
        try:
            if impl is None:
                raise RecordError("not_initialised", "init was not called")
            impl.transform(_parse(records[start:end]), out)
            if each:
                "".join(out._strings[mark[0] :])
        except RecordError as e:
            # A record yields all its samples or none.
            out._truncate(mark)
            errors.append(_WitRecordError(i, e.reason, e.detail))
        except Exception as e:
            out._truncate(mark)
            errors.append(_WitRecordError(i, "transform_exception", f"{type(e).__name__}: {e}"))
        start = end
    return out, errors


def export(cls):
    """The class componentize-py exports for `cls`: assign it to `Guest` in
    the app module (`Guest = export(MyTransform)`)."""

    class Guest(exports.Guest):
        _impl = None

        def init(self, config):
            try:
                Guest._impl = cls(Config(config))
            except Exception as e:  # the operator's configuration, not a bug
                raise Err(str(e)) from None

        def transform(self, records, ends):
            lowered = _lower(*_run(Guest._impl, records, ends, False))
            if lowered is None:
                # A label value that is not a string: find its record.
                lowered = _lower(*_run(Guest._impl, records, ends, True))
            return lowered

    return Guest
