"""Kinesis Data Streams helpers for tests/kinesis*.rs, against a local moto server.

    python kinesis_util.py create ENDPOINT STREAM REGION SHARDS
        creates STREAM with SHARDS shards and waits until it is ACTIVE
    python kinesis_util.py read ENDPOINT STREAM REGION
        reads every shard from TRIM_HORIZON with GetRecords and prints JSON:
        {"shards": N, "records": [{"shard", "seq", "key", "data" (base64),
        "aggregated", "sub"}]}: aggregated records are de-aggregated by the
        reference library (aws-kinesis-agg), one entry per user record
    python kinesis_util.py deagg
        reads JSON [{"key", "data" (base64)}] on stdin, de-aggregates each as a
        Kinesis record with aws-kinesis-agg and prints the user records likewise
"""

import base64
import datetime
import json
import sys

CREDS = dict(aws_access_key_id="testing", aws_secret_access_key="testing")


def client(endpoint, region):
    import boto3

    return boto3.client("kinesis", endpoint_url=endpoint, region_name=region, **CREDS)


def create(endpoint, stream, region, shards):
    k = client(endpoint, region)
    k.create_stream(StreamName=stream, ShardCount=int(shards))
    k.get_waiter("stream_exists").wait(
        StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
    )


def deaggregate(raw, shard=None):
    """raw: boto3-format records; returns user records (dicts)."""
    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

    out = []
    for r in raw:
        for u in iter_deaggregate_records(r, data_format="Boto3"):
            k = u["kinesis"]
            data = k["data"]
            # aggregated user records come back base64-encoded, plain ones raw
            if k.get("aggregated"):
                data = base64.b64decode(data)
            out.append(
                {
                    "shard": shard,
                    "seq": k["sequenceNumber"],
                    "key": k["partitionKey"],
                    "ehk": k.get("explicitHashKey"),
                    "aggregated": bool(k.get("aggregated")),
                    "sub": k.get("subSequenceNumber"),
                    "data": base64.b64encode(data).decode(),
                }
            )
    return out


def read(endpoint, stream, region):
    k = client(endpoint, region)
    shards = k.list_shards(StreamName=stream)["Shards"]
    records = []
    for s in shards:
        it = k.get_shard_iterator(
            StreamName=stream, ShardId=s["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            r = k.get_records(ShardIterator=it, Limit=10000)
            records.extend(deaggregate(r["Records"], s["ShardId"]))
            if not r["Records"]:
                break
            it = r.get("NextShardIterator")
    print(json.dumps({"shards": len(shards), "records": records}))


def deagg():
    now = datetime.datetime.now(datetime.timezone.utc)
    raw = [
        {
            "SequenceNumber": str(i),
            "PartitionKey": r["key"],
            "ApproximateArrivalTimestamp": now,
            "Data": base64.b64decode(r["data"]),
        }
        for i, r in enumerate(json.load(sys.stdin))
    ]
    print(json.dumps({"records": deaggregate(raw)}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"create": create, "read": read, "deagg": deagg}[cmd](*args)
