"""Runs one of the lake's named queries on a local copy of the lake with DuckDB.

`pnsctl report` runs this with the project's virtualenv (duckdb and sqlglot from
requirements-dev.txt). It reads one JSON object on stdin:
  sql    the query as Athena runs it (Trino SQL, analytics/queries/<name>.sql);
  table  the Glue table's columns (analytics/events-table.json);
  lake   a folder of day=YYYY-MM-DD/ folders of JSON-lines files, one event per line, as
         EventBridge delivers them (the local stack's stand-in for Firehose writes these).
and prints {"columns": [...], "rows": [[...], ...]}.

The table is built with the Glue table's own column types, so a query that works here finds
the same columns in Athena; detail_type is read from the key detail-type, as Firehose's
ColumnToJsonKeyMappings does.
"""

import decimal
import glob
import json
import os
import sys

import duckdb
import sqlglot


def duckdb_type(hive_type: str) -> str:
    return sqlglot.exp.DataType.build(hive_type, dialect="hive").sql(dialect="duckdb")


def main() -> None:
    request = json.load(sys.stdin)
    table = request["table"]
    columns = [(c["name"], duckdb_type(c["type"])) for c in table["columns"]]
    partition = table["partitionKeys"][0]["name"]

    con = duckdb.connect()
    # Athena's from_unixtime and date functions work in UTC.
    con.execute("SET TimeZone = 'UTC'")
    files = sorted(glob.glob(os.path.join(request["lake"], "**", "*"), recursive=True))
    files = [f for f in files if os.path.isfile(f)]
    declared = ", ".join(f'"{name}" {kind}' for name, kind in columns)
    con.execute(f'CREATE TABLE {table["name"]} ({declared}, "{partition}" VARCHAR)')
    if files:
        json_key = {"detail_type": "detail-type"}
        read_columns = "{" + ", ".join(
            f"'{json_key.get(name, name)}': '{kind}'" for name, kind in columns
        ) + "}"
        selected = ", ".join(f'"{json_key.get(name, name)}"' for name, _ in columns)
        con.execute(
            f'INSERT INTO {table["name"]} SELECT {selected}, "{partition}" FROM read_json('
            f"?, format = 'newline_delimited', columns = {read_columns}, "
            f"hive_partitioning = true)",
            [files],
        )
    sql = sqlglot.transpile(request["sql"], read="trino", write="duckdb")[0]
    result = con.execute(sql)
    names = [d[0] for d in result.description]

    def plain(value):
        if isinstance(value, decimal.Decimal):
            return float(value)
        return value

    rows = [[plain(v) for v in row] for row in result.fetchall()]
    json.dump({"columns": names, "rows": rows}, sys.stdout, default=str)


if __name__ == "__main__":
    main()
