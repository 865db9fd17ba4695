use super::*;
use datafusion::arrow::datatypes::{DataType, TimeUnit};

fn one(sql: &str) -> Statement {
    let mut v = parse_script(sql).unwrap();
    assert_eq!(v.len(), 1, "{sql}");
    v.pop().unwrap()
}

#[test]
fn create_table_with_watermark_computed_and_options() {
    let sql = "CREATE TEMPORARY TABLE IF NOT EXISTS r (\n  sensor_id STRING NOT NULL,\n  temperature DOUBLE,\n  \
               `timestamp` TIMESTAMP(3),\n  ts_ms BIGINT,\n  ts AS TO_TIMESTAMP(ts_ms),\n  amount DECIMAL(10, 2),\n  \
               lt TIMESTAMP_LTZ(6),\n  WATERMARK FOR `timestamp` AS `timestamp` - INTERVAL '5' SECOND,\n  \
               PRIMARY KEY (sensor_id) NOT ENFORCED\n) WITH ('connector' = 'filesystem', 'path' = 'x.jsonl');";
    let Statement::CreateTable {
        table,
        if_not_exists,
    } = one(sql)
    else {
        panic!()
    };
    assert!(if_not_exists);
    assert_eq!(table.name, "r");
    assert_eq!(table.columns.len(), 7);
    assert!(!table.columns[0].nullable);
    assert_eq!(
        table.columns[2].data_type,
        DataType::Timestamp(TimeUnit::Millisecond, None)
    );
    assert!(matches!(table.columns[4].kind, ColumnKind::Computed { .. }));
    assert_eq!(table.columns[5].data_type, DataType::Decimal128(10, 2));
    assert_eq!(
        table.columns[6].data_type,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    let wm = table.watermark.clone().unwrap();
    assert_eq!(wm.column, "timestamp");
    assert!(
        wm.expr_sql.contains("INTERVAL '5' SECOND"),
        "{}",
        wm.expr_sql
    );
    assert_eq!(table.primary_key, vec!["sensor_id"]);
    assert_eq!(table.option("path"), Some("x.jsonl"));
    assert_eq!(table.option_location("path").line, 11);
}

#[test]
fn unquoted_timestamp_column_name_is_accepted() {
    let Statement::CreateTable { table, .. } =
        one("CREATE TABLE s (timestamp TIMESTAMP(3), WATERMARK FOR timestamp AS timestamp) WITH ('connector'='x')")
    else {
        panic!()
    };
    assert_eq!(table.columns[0].name, "timestamp");
}

#[test]
fn errors_are_located() {
    let e = parse_script("CREATE TABLE t (\n  a INTEGR\n) WITH ()").unwrap_err();
    assert!(e.to_string().contains("INTEGR"), "{e}");
    assert_eq!(e.location().unwrap().line, 2);
    let e = parse_script("CREATE TABLE t (a INT, WATERMARK FOR b AS b) WITH ()").unwrap_err();
    assert!(e.to_string().contains("`b`"), "{e}");
    let e = parse_script("CREATE TABLE t (a INT, a INT)").unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");
    let e = parse_script("FROB x;").unwrap_err();
    assert!(e.to_string().contains("FROB"), "{e}");
}

#[test]
fn set_show_describe_drop_explain() {
    assert!(
        matches!(one("SET 'table.local-time-zone' = 'Europe/Berlin';"),
        Statement::Set { key: Some(k), value: Some(v) } if k == "table.local-time-zone" && v == "Europe/Berlin")
    );
    assert!(matches!(one("SET;"), Statement::Set { key: None, .. }));
    assert!(matches!(
        one("SHOW TABLES"),
        Statement::Show(ShowWhat::Tables)
    ));
    assert!(matches!(one("DESCRIBE t"), Statement::Describe { name, .. } if name == "t"));
    assert!(matches!(
        one("DROP TABLE IF EXISTS t"),
        Statement::DropTable {
            if_exists: true,
            ..
        }
    ));
    assert!(
        matches!(one("EXPLAIN SELECT 1"), Statement::Explain(inner) if matches!(*inner, Statement::Query(_)))
    );
}

#[test]
fn script_splitting_and_statement_sets() {
    let sql = "CREATE VIEW v AS SELECT ';' AS s; -- a comment; with semicolons\n\
               EXECUTE STATEMENT SET BEGIN\n INSERT INTO a SELECT * FROM v;\n INSERT INTO b SELECT * FROM v;\nEND;\nSELECT 1";
    let v = parse_script(sql).unwrap();
    assert_eq!(v.len(), 3);
    let Statement::CreateView { view, .. } = &v[0] else {
        panic!()
    };
    assert_eq!(view.query_sql, "SELECT ';' AS s");
    let Statement::StatementSet(inserts) = &v[1] else {
        panic!("{:?}", v[1])
    };
    assert_eq!(inserts.len(), 2);
    assert!(matches!(&inserts[1], Statement::Insert { table, .. } if table == "b"));
}

#[test]
fn all_errors_are_collected() {
    let (ok, errs) = parse_script_all("SELECT 1; FROB; CREATE TABLE (; SELECT 2");
    assert_eq!(ok.len(), 2);
    assert_eq!(errs.len(), 2);
}

#[test]
fn map_and_array_types() {
    let Statement::CreateTable { table, .. } = one(
        "CREATE TABLE s (h MAP<STRING, BYTES> METADATA FROM 'headers', tags ARRAY<STRING>, \
         m MAP<STRING, ARRAY<INT> >) WITH ('connector'='x')",
    ) else {
        panic!()
    };
    let DataType::Map(entries, false) = &table.columns[0].data_type else {
        panic!("{:?}", table.columns[0].data_type)
    };
    let DataType::Struct(kv) = entries.data_type() else {
        panic!()
    };
    assert_eq!(
        (kv[0].data_type(), kv[1].data_type()),
        (&DataType::Utf8, &DataType::Binary)
    );
    assert_eq!(
        table.columns[1].data_type,
        DataType::new_list(DataType::Utf8, true)
    );
    assert!(matches!(table.columns[2].data_type, DataType::Map(..)));
    let err = parse_script("CREATE TABLE s (m MAP<STRING, ARRAY<INT>>) WITH ('connector'='x')")
        .unwrap_err();
    assert!(format!("{err:?}").contains("> >"), "{err:?}");
    let err =
        parse_script("CREATE TABLE s (m MAP<STRING INT>) WITH ('connector'='x')").unwrap_err();
    assert!(format!("{err:?}").contains("expected `,`"), "{err:?}");
}
