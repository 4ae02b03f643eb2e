"""A hostile Python transform for the sandbox tests: per record, "do" asks it
to loop forever, eat memory, or read a file, or to add a sample the SDK must
refuse (label_int, bad_name, text_value, ts_huge) or the host must (a
lone surrogate: surrogate, split_pair); other records become one
`probe` sample (value `bytes`, label `tag`). With `errors=reversed_twice`
in its configuration it reports each call's record errors in reverse order
and twice, which the contract forbids: the host must still dead-letter each
rejected record once."""

from pmacct_transform import Transform, export, string, timestamp_ms, value_text


class Probe(Transform):
    def __init__(self, config):
        self.job = config.job
        self.reversed_twice = config.get("errors") == "reversed_twice"

    def transform(self, record, out):
        action = record.get("do")
        if action == "loop":
            while True:
                pass
        if action == "oom":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if action == "read":
            with open("/etc/passwd") as f:
                f.read()
        labels = [("job", self.job), ("tag", string(record, "tag"))]
        value = value_text(record, "bytes")
        ts = timestamp_ms(record, "stamp_updated")
        # Samples the SDK must refuse, each for its record alone.
        if action == "label_int":
            labels.append(("port", 443))
        elif action == "bad_name":
            labels.append(("ip-src", "x"))
        elif action == "text_value":
            value = "12abc"
        elif action == "ts_huge":
            ts = 2**70
        elif action == "surrogate":
            labels.append(("lone", "\ud800"))
        elif action == "split_pair":
            labels += [("x", "a\ud834"), ("y", "\udd1eb")]
        out.add("probe", labels, value, ts)


_Guest = export(Probe)


class Guest(_Guest):
    def transform(self, records, ends):
        out = super().transform(records, ends)
        if _Guest._impl is not None and _Guest._impl.reversed_twice:
            out.errors = list(reversed(out.errors)) * 2
        return out
