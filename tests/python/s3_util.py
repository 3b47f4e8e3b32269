"""S3 helpers for tests/s3.rs, against a local moto server.

    python s3_util.py create-bucket ENDPOINT BUCKET REGION
    python s3_util.py dump ENDPOINT BUCKET DIR
        downloads every object to DIR/<key> (same layout as the keys) and
        prints JSON: {"objects": [{key, size, content_type, content_encoding,
        storage_class, etag}], "uploads": <multipart uploads left open>}
    python s3_util.py duckdb GLOB
        reads GLOB with DuckDB's read_json_auto(hive_partitioning = 1) and
        prints JSON rows [content_type, year, month, day, hour, count]
"""

import json
import os
import sys

CREDS = dict(aws_access_key_id="testing", aws_secret_access_key="testing")


def client(endpoint, region="us-east-1"):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=region, **CREDS)


def create_bucket(endpoint, bucket, region):
    c = client(endpoint, region)
    if region == "us-east-1":
        c.create_bucket(Bucket=bucket)
    else:
        c.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
        )


def dump(endpoint, bucket, out_dir):
    c = client(endpoint)
    objects = []
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            key = o["Key"]
            r = c.get_object(Bucket=bucket, Key=key)
            body = r["Body"].read()
            path = os.path.join(out_dir, key)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(body)
            objects.append(
                {
                    "key": key,
                    "size": len(body),
                    "content_type": r.get("ContentType"),
                    "content_encoding": r.get("ContentEncoding"),
                    "storage_class": r.get("StorageClass"),
                    "etag": r.get("ETag"),
                }
            )
    uploads = c.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    print(json.dumps({"objects": objects, "uploads": len(uploads)}))


def query(glob):
    import duckdb

    rows = duckdb.sql(
        f"""
        SELECT content_type, year, month, day, hour, count(*) AS n
        FROM read_json_auto('{glob}', hive_partitioning = 1)
        GROUP BY ALL ORDER BY ALL
        """
    ).fetchall()
    print(json.dumps([[str(v) for v in r[:-1]] + [r[-1]] for r in rows]))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "create-bucket":
        create_bucket(*args)
    elif cmd == "dump":
        dump(*args)
    elif cmd == "duckdb":
        query(*args)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
