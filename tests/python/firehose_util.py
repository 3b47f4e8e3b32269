"""Firehose helpers for tests/firehose.rs, against a local moto server.

    python firehose_util.py create ENDPOINT BUCKET STREAM REGION
        creates BUCKET and a DirectPut delivery stream STREAM with an
        extended S3 destination into it
    python firehose_util.py dump ENDPOINT BUCKET REGION
        prints JSON: {"objects": [{"key": K, "body": TEXT}]}
"""

import json
import sys

CREDS = dict(aws_access_key_id="testing", aws_secret_access_key="testing")


def client(service, endpoint, region):
    import boto3

    return boto3.client(service, endpoint_url=endpoint, region_name=region, **CREDS)


def create(endpoint, bucket, stream, region):
    s3 = client("s3", endpoint, region)
    s3.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
    )
    fh = client("firehose", endpoint, region)
    fh.create_delivery_stream(
        DeliveryStreamName=stream,
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/firehose",
            "BucketARN": f"arn:aws:s3:::{bucket}",
            "Prefix": "raw/",
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60},
            "CompressionFormat": "UNCOMPRESSED",
        },
    )


def dump(endpoint, bucket, region):
    s3 = client("s3", endpoint, region)
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            objects.append({"key": o["Key"], "body": body.decode("utf-8")})
    print(json.dumps({"objects": objects}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"create": create, "dump": dump}[cmd](*args)
