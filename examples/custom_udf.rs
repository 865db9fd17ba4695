//! Registering your own SQL functions: a scalar UDF (`c_to_f`) and an aggregate UDF
//! (`spread`, max - min) built with DataFusion's helpers, used in a windowed query over the
//! bundled sensor file. Run it with `cargo run --example custom_udf`.

use std::sync::Arc;

use weir::arrow::array::{Array, ArrayRef, Float64Array};
use weir::arrow::datatypes::DataType;
use weir::datafusion::common::ScalarValue;
use weir::datafusion::error::Result as DfResult;
use weir::datafusion::logical_expr::{
    create_udaf, create_udf, Accumulator, ColumnarValue, Volatility,
};

/// Celsius to Fahrenheit, one array at a time.
fn c_to_f(args: &[ColumnarValue]) -> DfResult<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let c = arrays[0]
        .as_any()
        .downcast_ref::<Float64Array>()
        .expect("DOUBLE");
    let f: Float64Array = c.iter().map(|v| v.map(|c| c * 9.0 / 5.0 + 32.0)).collect();
    Ok(ColumnarValue::Array(Arc::new(f) as ArrayRef))
}

/// `spread(x)`: the largest minus the smallest value.
#[derive(Debug, Default)]
struct Spread {
    min: Option<f64>,
    max: Option<f64>,
}

impl Accumulator for Spread {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let v = values[0]
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("DOUBLE");
        for x in v.iter().flatten() {
            self.min = Some(self.min.map_or(x, |m| m.min(x)));
            self.max = Some(self.max.map_or(x, |m| m.max(x)));
        }
        Ok(())
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        self.update_batch(&states[..1])?;
        self.update_batch(&states[1..])
    }
    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Float64(self.min),
            ScalarValue::Float64(self.max),
        ])
    }
    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(ScalarValue::Float64(
            self.max.zip(self.min).map(|(a, b)| a - b),
        ))
    }
    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

#[tokio::main]
async fn main() -> weir::Result<()> {
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    engine.register_udf(create_udf(
        "c_to_f",
        vec![DataType::Float64],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(c_to_f),
    ))?;
    engine.register_udaf(create_udaf(
        "spread",
        vec![DataType::Float64],
        Arc::new(DataType::Float64),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::new(Spread::default()))),
        Arc::new(vec![DataType::Float64, DataType::Float64]),
    ))?;
    engine
        .execute(
            "CREATE TABLE sensor_readings (
               sensor_id STRING, temperature DOUBLE, humidity DOUBLE, `timestamp` TIMESTAMP(3),
               WATERMARK FOR `timestamp` AS `timestamp` - INTERVAL '5' SECOND
             ) WITH ('connector' = 'filesystem', 'path' = 'sql-examples/data/sensors.jsonl',
                     'format' = 'json')",
        )
        .await?;
    let batches = engine
        .query(
            "SELECT sensor_id, window_start, MAX(c_to_f(temperature)) AS max_f,
                    spread(temperature) AS spread_c
             FROM TABLE(TUMBLE(TABLE sensor_readings, DESCRIPTOR(`timestamp`), INTERVAL '5' MINUTE))
             GROUP BY sensor_id, window_start, window_end",
        )
        .await?
        .collect()
        .await?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let spread = batches[0]
        .column(3)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    println!("{rows} windows; first spread {:.2} °C", spread.value(0));
    assert!(rows > 0 && spread.value(0) >= 0.0);
    Ok(())
}
