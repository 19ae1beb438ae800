"""The fleet tests' view from outside wattline: boto3 against the S3
server, and DuckDB's Delta extension (loaded from its file) reading the
tables as a fleet engine would.

Usage: python3 fleet.py ENDPOINT COMMAND ARGS...; prints JSON.
  bucket NAME                  create the bucket
  race NAME KEY N              N create-only writes of KEY at once; prints how many won
  objects NAME PREFIX          keys under PREFIX
  legacy NAME PREFIX           building_daily as an older wattline wrote it (no
                               peak_kw, cost, quarantined), rows of site "legacy",
                               by another Delta writer (the deltalake package)
  live NAME TABLE_PREFIX        data files the table's log refers to now
  query NAME PREFIX SQL        download PREFIX, then run SQL in DuckDB; in SQL,
                               {readings} etc. stand for delta_scan of that table
"""

import concurrent.futures
import glob
import json
import os
import sys
import tempfile

import boto3
import duckdb
import duckdb_extension_delta


def client(endpoint):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="fleet-test",
        aws_secret_access_key="fleet-test-secret",
        region_name="us-east-1",
    )


def keys(s3, bucket, prefix):
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.extend(o["Key"] for o in page.get("Contents", []))
    return out


def race(s3, bucket, key, n):
    def put(i):
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=str(i).encode(), IfNoneMatch="*")
            return 1
        except s3.exceptions.ClientError as e:
            code = e.response["ResponseMetadata"]["HTTPStatusCode"]
            assert code in (409, 412), e
            return 0

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return sum(pool.map(put, range(n)))


def legacy(endpoint, bucket, prefix):
    import deltalake

    rows = duckdb.sql(
        "SELECT 'legacy' AS site, '2026-10' AS month, 'b-legacy' AS building_id, "
        "'t-legacy' AS tenant_id, DATE '2026-10-01' + i::INT AS day, (1.5 * i)::DOUBLE AS kwh, "
        "0.5::DOUBLE AS peak_kwh, 96::BIGINT AS readings FROM range(3) t(i)"
    )
    options = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "fleet-test",
        "AWS_SECRET_ACCESS_KEY": "fleet-test-secret",
        "AWS_REGION": "us-east-1",
        "conditional_put": "etag",
    }
    uri = f"s3://{bucket}/{prefix}/building_daily"
    deltalake.write_deltalake(uri, rows, partition_by=["site", "month"], storage_options=options)
    return deltalake.DeltaTable(uri, storage_options=options).version()


def live(s3, bucket, table):
    files = set()
    commits = sorted(k for k in keys(s3, bucket, f"{table}/_delta_log/") if k.endswith(".json"))
    for key in commits:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        for line in body.splitlines():
            action = json.loads(line)
            if "add" in action:
                files.add(f"{table}/{action['add']['path']}")
            if "remove" in action:
                files.discard(f"{table}/{action['remove']['path']}")
    return sorted(files)


def query(s3, bucket, prefix, sql):
    with tempfile.TemporaryDirectory() as root:
        for key in keys(s3, bucket, prefix):
            path = os.path.join(root, key)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            s3.download_file(bucket, key, path)
        ext = glob.glob(
            os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "extensions", "*", "delta.duckdb_extension")
        )[0]
        con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
        con.execute(f"LOAD '{ext}'")
        tables = {
            t: f"delta_scan('{os.path.join(root, prefix, t)}')"
            for t in ("readings", "sensor_hourly", "building_daily", "building_monthly")
        }
        rows = con.execute(sql.format(**tables)).fetchall()
        return [list(r) for r in rows]


def main():
    endpoint, command, *args = sys.argv[1:]
    s3 = client(endpoint)
    if command == "bucket":
        s3.create_bucket(Bucket=args[0])
        out = "ok"
    elif command == "race":
        out = race(s3, args[0], args[1], int(args[2]))
    elif command == "objects":
        out = keys(s3, args[0], args[1])
    elif command == "legacy":
        out = legacy(endpoint, args[0], args[1])
    elif command == "live":
        out = live(s3, args[0], args[1])
    elif command == "query":
        out = query(s3, args[0], args[1], args[2])
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
