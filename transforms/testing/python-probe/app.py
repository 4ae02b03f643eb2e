"""A hostile Python transform for the sandbox tests: per record, "do" asks it
to loop forever, eat memory, or read a file; other records become one
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
        out.add(
            "probe",
            [("job", self.job), ("tag", string(record, "tag"))],
            value_text(record, "bytes"),
            timestamp_ms(record, "stamp_updated"),
        )


_Guest = export(Probe)


class Guest(_Guest):
    def transform(self, records, ends):
        out = super().transform(records, ends)
        if _Guest._impl is not None and _Guest._impl.reversed_twice:
            out.errors = list(reversed(out.errors)) * 2
        return out
