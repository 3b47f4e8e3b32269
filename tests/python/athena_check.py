"""Parses a CREATE EXTERNAL TABLE (stdin) with sqlglot's Athena dialect and
prints what it found as JSON (tests/athena.rs compares it). sqlglot falls
back to an opaque `Command` on syntax it does not understand, so anything
but a `Create` is a failure here."""
import json
import sys

import sqlglot
from sqlglot import exp

e = sqlglot.parse_one(sys.stdin.read(), read="athena")
if not isinstance(e, exp.Create):
    sys.exit(f"not parsed as CREATE (sqlglot fell back to {type(e).__name__})")
props = e.args.get("properties")
out = {
    "kind": e.args.get("kind"),
    "external": any(isinstance(p, exp.ExternalProperty) for p in props.expressions),
    "columns": [[c.name, c.args["kind"].sql("athena")] for c in e.this.expressions],
    "partitions": [],
    "serde": None,
    "serde_properties": {},
    "location": None,
    "file_format": None,
    "tblproperties": {},
}
for p in props.expressions:
    if isinstance(p, exp.PartitionedByProperty):
        out["partitions"] = [[c.name, c.args["kind"].sql("athena")] for c in p.this.expressions]
    elif isinstance(p, exp.RowFormatSerdeProperty):
        out["serde"] = p.this.name
        sp = p.args.get("serde_properties")
        for q in sp.expressions if sp else []:
            out["serde_properties"][q.name] = q.args["value"].name
    elif isinstance(p, exp.FileFormatProperty):
        out["file_format"] = p.this.name
    elif isinstance(p, exp.LocationProperty):
        out["location"] = p.this.name
    elif type(p) is exp.Property:
        out["tblproperties"][p.name] = p.args["value"].name
print(json.dumps(out))
