"""DuckDB over Parquet files, for tests/parquet.rs.

    python parquet_check.py GLOB SQL [SQL ...]
        makes view `t` = read_parquet(GLOB, hive_partitioning = 1,
        union_by_name = 1) and prints a JSON list: for each SQL, its rows
        (lists; values JSON can hold as they are, others as text), or
        null when no file matches GLOB yet
"""

import json
import sys


def cell(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def main():
    import duckdb

    glob, sqls = sys.argv[1], sys.argv[2:]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    try:
        con.execute(
            f"CREATE VIEW t AS SELECT * FROM read_parquet('{glob}', hive_partitioning = 1, union_by_name = 1)"
        )
    except duckdb.IOException as e:
        if "No files found" in str(e):
            print("null")
            return
        raise
    out = []
    for sql in sqls:
        out.append([[cell(v) for v in row] for row in con.execute(sql).fetchall()])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
