// What Grafana's PostgreSQL data source sends, through the driver it
// uses (lib/pq, Go's database/sql): the health check, the version
// detection of its settings page, the query builder's table and column
// lists, and panel queries after its macros are expanded. The SQL texts
// are the ones Grafana sends (its macro expansions and metadata queries,
// rewritten here from its documented behaviour); this program does not
// contain Grafana's code.
//
// Usage: probe PORT KEY FROM_MS TO_MS
// Prints one line per fact; the Rust test (tests/api/grafana.rs) checks
// them. Exits non-zero on the first error, printing it.
package main

import (
	"database/sql"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"
)

func main() {
	if len(os.Args) != 5 {
		fail("usage: probe PORT KEY FROM_MS TO_MS", nil)
	}
	from := millis(os.Args[3])
	to := millis(os.Args[4])
	dsn := fmt.Sprintf("host=127.0.0.1 port=%s user=grafana password='%s' dbname=wattline sslmode=disable connect_timeout=10",
		os.Args[1], os.Args[2])
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		fail("open", err)
	}
	defer db.Close()

	// "Save & test": database/sql's Ping, which lib/pq sends as an
	// empty simple query.
	if err := db.Ping(); err != nil {
		fail("ping", err)
	}
	fmt.Println("ping ok")

	// The settings page detects the server version and TimescaleDB.
	rows := query(db, "SELECT current_setting('server_version_num')::int/100 as version")
	for _, r := range rows {
		fmt.Println("version", r[0])
	}
	rows = query(db, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
	fmt.Println("timescaledb rows", len(rows))

	// The query builder's table list: tables of the schemas on the
	// search path, with "$user" read as the user.
	rows = query(db, `SELECT quote_ident(table_name) AS "table" FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
      AND quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )`)
	for _, r := range rows {
		fmt.Println("table", r[0])
	}
	// ... and a table's columns.
	rows = query(db, `SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE quote_ident(table_name) = 'readings'`)
	for _, r := range rows {
		fmt.Println("column", r[0], r[1])
	}

	// A variable's values.
	rows = query(db, "SELECT DISTINCT sensor_id FROM readings ORDER BY 1")
	for _, r := range rows {
		fmt.Println("variable", r[0])
	}

	// Panels. $__timeFilter(ts) is a BETWEEN of two RFC 3339 times in
	// UTC (with fractions of a second when there are any),
	// $__timeGroupAlias(ts,'1h') is epoch arithmetic named "time",
	// $__timeEpoch(ts) the epoch seconds.
	filter := fmt.Sprintf("ts BETWEEN '%s' AND '%s'", rfc3339(from), rfc3339(to))
	panels := []struct{ name, sql string }{
		{"timegroup", `SELECT floor(extract(epoch from ts)/3600)*3600 AS "time", sum(value_kwh) AS "kwh"
FROM readings WHERE ` + filter + ` GROUP BY 1 ORDER BY 1`},
		{"datebin", `SELECT date_bin(INTERVAL '3600000 milliseconds', ts, TIMESTAMP '1970-01-01') AS "time",
       sensor_id AS metric, sum(value_kwh) AS kwh
FROM readings WHERE ` + filter + ` GROUP BY 1, 2 ORDER BY 1, 2`},
		{"raw", `SELECT ts AS "time", extract(epoch from ts) AS epoch, sensor_id AS metric, value_kwh
FROM readings WHERE ` + filter + ` AND sensor_id = 'a1' ORDER BY 1 LIMIT 2`},
	}
	for _, p := range panels {
		r, err := db.Query(p.sql)
		if err != nil {
			fail(p.name, err)
		}
		types, err := r.ColumnTypes()
		if err != nil {
			fail(p.name, err)
		}
		names := make([]string, len(types))
		for i, t := range types {
			names[i] = t.DatabaseTypeName()
		}
		fmt.Println(p.name, "types", strings.Join(names, " "))
		for _, row := range collect(r, p.name) {
			fmt.Println(p.name, "row", strings.Join(row, " "))
		}
	}

	// An error Grafana shows in the panel: an unknown table, with its
	// SQLSTATE.
	if _, err := db.Query("SELECT * FROM no_such_table"); err != nil {
		code := ""
		if e, ok := err.(*pq.Error); ok {
			code = string(e.Code)
		}
		fmt.Println("error", code, err)
	} else {
		fail("unknown table answered", nil)
	}
}

func millis(s string) time.Time {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		fail("time", err)
	}
	return time.UnixMilli(ms).UTC()
}

func rfc3339(t time.Time) string { return t.Format(time.RFC3339Nano) }

func query(db *sql.DB, text string) [][]string {
	r, err := db.Query(text)
	if err != nil {
		fail(text, err)
	}
	return collect(r, text)
}

// collect reads every row, each value as the driver scans it into a
// string (times in RFC 3339, as Grafana's converter receives them).
func collect(r *sql.Rows, what string) [][]string {
	defer r.Close()
	cols, err := r.Columns()
	if err != nil {
		fail(what, err)
	}
	var out [][]string
	for r.Next() {
		values := make([]interface{}, len(cols))
		ptrs := make([]interface{}, len(cols))
		for i := range values {
			ptrs[i] = &values[i]
		}
		if err := r.Scan(ptrs...); err != nil {
			fail(what, err)
		}
		row := make([]string, len(cols))
		for i, v := range values {
			switch v := v.(type) {
			case time.Time:
				row[i] = v.UTC().Format(time.RFC3339)
			case []byte:
				row[i] = string(v)
			default:
				row[i] = fmt.Sprint(v)
			}
		}
		out = append(out, row)
	}
	if err := r.Err(); err != nil {
		fail(what, err)
	}
	return out
}

func fail(what string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
	os.Exit(1)
}
