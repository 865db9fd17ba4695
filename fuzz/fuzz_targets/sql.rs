//! SQL scripts through the front end as `weir run` plans them before anything runs: parsing
//! (Flink DDL, SET, statement sets), then every statement against one engine, with queries
//! and INSERTs planned (EXPLAIN) and DDL applied. Errors are answers; a panic, or an error
//! whose location lies outside the script, is a finding.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use weir_engine::connector::{ConnectorRegistry, Source, SourceContext, SourceFactory};
use weir_planner::TableDef;

/// The Kafka source factory without its broker check (a planning fuzz must not wait on a
/// network); validation of the table's options is the real one.
struct NoBrokerKafka(weir_connectors::KafkaSourceFactory);

impl SourceFactory for NoBrokerKafka {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn validate(&self, table: &TableDef) -> Result<(), String> {
        self.0.validate(table)
    }
    fn is_bounded(&self, table: &TableDef) -> bool {
        self.0.is_bounded(table)
    }
    fn create(&self, ctx: SourceContext) -> weir_engine::Result<Box<dyn Source>> {
        self.0.create(ctx)
    }
    fn metadata_keys(&self) -> &'static [&'static str] {
        self.0.metadata_keys()
    }
}

fn registry() -> ConnectorRegistry {
    let mut r = weir_connectors::default_registry();
    r.register_source(Arc::new(NoBrokerKafka(weir_connectors::KafkaSourceFactory)));
    r
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

fn check_location(sql: &str, e: &weir_planner::PlanError) {
    if let Some(at) = e.location() {
        let lines = sql.split('\n').count().max(1) as u64;
        assert!(
            at.line <= lines,
            "error '{e}' at line {} of a {lines}-line script",
            at.line
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let (statements, errors) = weir_planner::parse_script_all(sql);
    for e in &errors {
        check_location(sql, e);
    }
    let engine = weir_engine::Engine::with_connectors(registry());
    engine.set_quiet(true);
    runtime().block_on(async {
        for st in statements.into_iter().filter_map(weir_engine::plan_only) {
            let _ = engine.execute_statement(st).await;
        }
    });
});
