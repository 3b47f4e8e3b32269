"""Parses Prometheus text format from stdin with the official client's
parser and prints {"families": {name: type}, "samples": [[name, labels, value]]}
as JSON. Exits non-zero (with the parser's error) on malformed input."""
import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
families = {}
samples = []
for fam in text_string_to_metric_families(text):
    if fam.name in families:
        sys.exit(f"family {fam.name} appears twice")
    families[fam.name] = fam.type
    for s in fam.samples:
        v = s.value
        if math.isinf(v):
            v = "+Inf" if v > 0 else "-Inf"
        samples.append([s.name, s.labels, v])
json.dump({"families": families, "samples": samples}, sys.stdout)
