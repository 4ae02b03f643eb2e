// Cardinality reduction in JavaScript: the Rust `subnets` example, ported.
// Subnets instead of host addresses (prefix_v4, default 24; prefix_v6,
// default 64), ports below 1024 kept and the others bucketed as `other`
// (ports=bucket, the default) or dropped (ports=drop). Writes the same
// samples as examples/transforms/subnets (a test compares them).

import {
  RecordError, asNumber, exportTransform, labelText, string, timestampMs, valueText,
} from "../../../guest-sdk/js/pmacct_transform.js";

// Addresses as BigInt, masked, and written the way Rust's std writes them.
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

function network(record, name, v4, v6) {
  const text = string(record, name);
  const a4 = parseV4(text);
  if (a4 !== null) {
    const masked = v4 === 0 ? 0n : (a4 >> BigInt(32 - v4)) << BigInt(32 - v4);
    const parts = [24n, 16n, 8n, 0n].map((s) => String((masked >> s) & 255n));
    return `${parts.join(".")}/${v4}`;
  }
  const a6 = parseV6(text);
  if (a6 === null) throw new RecordError("invalid_address", `${name} = "${text}"`);
  const masked = v6 === 0 ? 0n : (a6 >> BigInt(128 - v6)) << BigInt(128 - v6);
  return `${formatV6(masked)}/${v6}`;
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
        ...base,
        ["src_net", network(record, "ip_src", v4, v6)],
        ["dst_net", network(record, "ip_dst", v4, v6)],
        ["ip_proto", labelText(record.ip_proto ?? "")],
      ];
      if (ports === "bucket") {
        labels.push(["src_port", bucket(record, "port_src")], ["dst_port", bucket(record, "port_dst")]);
      }
      const values = metrics.map((m) => [m, valueText(record, m)]);
      for (const [metric, value] of values) out.add(metric, labels, value, ts);
    },
  };
});
