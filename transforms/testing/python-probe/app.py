"""A hostile Python transform for the sandbox tests: per record, "do" asks it
to loop forever, eat memory, or read a file; other records become one
`probe` sample (value `bytes`, label `tag`)."""

from pmacct_transform import Transform, export, string, timestamp_ms, value_text


class Probe(Transform):
    def __init__(self, config):
        self.job = config.job

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


Guest = export(Probe)
