"""Cardinality reduction in Python: the Rust `subnets` example, ported.

Subnets instead of host addresses (prefix_v4, default 24; prefix_v6, default
64), ports below 1024 kept and the others bucketed as `other` (ports=bucket,
the default) or dropped (ports=drop). Writes the same samples as
examples/transforms/subnets (a test compares them).
"""

from pmacct_transform import RecordError, Transform, as_number, export, label_text
from pmacct_transform import network, string, timestamp_ms, value_text


class Subnets(Transform):
    def __init__(self, config):
        self.metrics = config.metric_fields()
        self.base = [("job", config.job), ("instance", config.instance)]
        self.v4 = config.integer("prefix_v4", 24, 0, 32)
        self.v6 = config.integer("prefix_v6", 64, 0, 128)
        self.ports = config.get("ports", "bucket")
        if self.ports not in ("drop", "bucket"):
            raise ValueError(f'ports: "{self.ports}" is not drop or bucket')

    def network(self, record, name):
        text = string(record, name)
        net = network(text, self.v4, self.v6)
        if net is None:
            raise RecordError("invalid_address", f'{name} = "{text}"')
        return net

    def transform(self, record, out):
        ts = timestamp_ms(record, "stamp_updated")
        labels = self.base + [
            ("src_net", self.network(record, "ip_src")),
            ("dst_net", self.network(record, "ip_dst")),
            ("ip_proto", label_text(record.get("ip_proto", ""))),
        ]
        if self.ports == "bucket":
            labels += [("src_port", bucket(record, "port_src")), ("dst_port", bucket(record, "port_dst"))]
        values = [(m, value_text(record, m)) for m in self.metrics]
        for metric, value in values:
            out.add(metric, labels, value, ts)


def bucket(record, name):
    p = as_number(record.get(name))
    if p is None:
        return ""
    if p < 1024:
        return str(int(p)) if p.is_integer() else repr(p)
    return "other"


Guest = export(Subnets)
