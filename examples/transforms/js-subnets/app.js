// Cardinality reduction in JavaScript: the Rust `subnets` example, ported.
// Subnets instead of host addresses (prefix_v4, default 24; prefix_v6,
// default 64), ports below 1024 kept and the others bucketed as `other`
// (ports=bucket, the default) or dropped (ports=drop). Writes the same
// samples as examples/transforms/subnets (a test compares them).

import {
  RecordError, asNumber, exportTransform, labelText, network, number, string, timestampMs,
} from "../../../guest-sdk/js/pmacct_transform.js";

function subnet(record, name, v4, v6) {
  const text = string(record, name);
  const net = network(text, v4, v6);
  if (net === null) throw new RecordError("invalid_address", `${name} = "${text}"`);
  return net;
}

function bucket(record, name) {
  const p = asNumber(record[name]);
  if (p === null) return "";
  return p < 1024 ? String(p) : "other";
}

export const guest = exportTransform((config) => {
  const metrics = config.metricFields();
  const base = [["job", config.job], ["instance", config.instance]];
  const v4 = config.integer("prefix_v4", 24, 0, 32);
  const v6 = config.integer("prefix_v6", 64, 0, 128);
  const ports = config.get("ports", "bucket");
  if (ports !== "drop" && ports !== "bucket") throw new Error(`ports: "${ports}" is not drop or bucket`);
  return {
    transform(record, out) {
      const ts = timestampMs(record, "stamp_updated");
      const labels = [
        base[0],
        base[1],
        ["src_net", subnet(record, "ip_src", v4, v6)],
        ["dst_net", subnet(record, "ip_dst", v4, v6)],
        ["ip_proto", labelText(record.ip_proto ?? "")],
      ];
      if (ports === "bucket") {
        labels.push(["src_port", bucket(record, "port_src")], ["dst_port", bucket(record, "port_dst")]);
      }
      // Every value read before any sample is added: a bad one rejects the
      // record whole. Index loops: an interpreter runs for-of slowly.
      const values = [];
      for (let i = 0; i < metrics.length; i++) values.push(number(record, metrics[i]));
      for (let i = 0; i < metrics.length; i++) out.add(metrics[i], labels, values[i], ts);
    },
  };
});
