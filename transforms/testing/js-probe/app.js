// A JavaScript transform for the SDK's tests: per record, "do" asks it to
// add a sample the SDK must refuse (label_int, bad_name, text_value,
// ts_huge, and a lone surrogate: surrogate, split_pair); other records
// become one `probe` sample (value `bytes`, label `tag`), as the Python
// probe writes them.

import { exportTransform, string, timestampMs, valueText } from "../../../guest-sdk/js/pmacct_transform.js";

export const guest = exportTransform((config) => ({
  transform(record, out) {
    const labels = [["job", config.job], ["tag", string(record, "tag")]];
    let value = valueText(record, "bytes");
    let ts = timestampMs(record, "stamp_updated");
    const action = record.do;
    if (action === "label_int") labels.push(["port", 443]);
    else if (action === "bad_name") labels.push(["ip-src", "x"]);
    else if (action === "text_value") value = "12abc";
    else if (action === "ts_huge") ts = 2 ** 70;
    else if (action === "surrogate") labels.push(["lone", "\uD800"]);
    else if (action === "split_pair") labels.push(["x", "a\uD834"], ["y", "\uDD1Eb"]);
    out.add("probe", labels, value, ts);
  },
}));
