//! DataFusion table sources that stand for Weir's tables, views and window TVFs.
//!
//! DataFusion only plans with them; it never scans them. The stream converter recognises each
//! by downcasting the `TableScan`'s source.

use std::borrow::Cow;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::logical_expr::{LogicalPlan, TableSource};

use crate::catalog::TableDef;
use crate::tvf::TvfCall;

/// A catalog table (a connector source).
#[derive(Debug)]
pub struct StreamTableSource {
    pub table: Arc<TableDef>,
}

impl TableSource for StreamTableSource {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }
}

/// A view: DataFusion inlines its plan.
pub struct ViewSource {
    pub plan: LogicalPlan,
}

impl TableSource for ViewSource {
    fn schema(&self) -> SchemaRef {
        Arc::new(self.plan.schema().as_arrow().clone())
    }

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        Some(Cow::Borrowed(&self.plan))
    }
}

/// A window TVF: the input's rows plus `window_start`, `window_end`, `window_time`.
pub struct WindowTvfSource {
    pub call: TvfCall,
    pub input: LogicalPlan,
    /// Index of the time column in the input.
    pub time_index: usize,
    pub schema: SchemaRef,
}

impl WindowTvfSource {
    /// Build the source; the error says what is wrong with the time column.
    pub fn new(call: TvfCall, input: LogicalPlan) -> Result<Self, String> {
        let in_schema = input.schema().as_arrow().clone();
        let time_index = in_schema.index_of(&call.time_col).map_err(|_| {
            format!(
                "DESCRIPTOR({}): no such column; columns are {}",
                call.time_col,
                names(&in_schema)
            )
        })?;
        let (unit, tz) = match in_schema.field(time_index).data_type() {
            DataType::Timestamp(u, tz) => (*u, tz.clone()),
            other => {
                return Err(format!(
                    "the window time column `{}` must be a TIMESTAMP or TIMESTAMP_LTZ, not {other}",
                    call.time_col
                ))
            }
        };
        let [s, e, t] = call.column_names();
        if let Some(dup) = [s, e, t]
            .into_iter()
            .find(|n| in_schema.index_of(n).is_ok())
        {
            return Err(format!(
                "the input of {} already has a column named `{dup}`; rename it first \
                 (e.g. `{dup} AS first_{dup}`)",
                call.spec.name()
            ));
        }
        let mut fields: Vec<Field> = in_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(s, DataType::Timestamp(unit, None), false));
        fields.push(Field::new(e, DataType::Timestamp(unit, None), false));
        fields.push(Field::new(t, DataType::Timestamp(unit, tz), false));
        let schema = Arc::new(Schema::new(fields));
        Ok(Self {
            call,
            input,
            time_index,
            schema,
        })
    }

    pub fn time_unit(&self) -> TimeUnit {
        match self.schema.field(self.time_index).data_type() {
            DataType::Timestamp(u, _) => *u,
            _ => TimeUnit::Millisecond,
        }
    }

    /// True when the time column is a TIMESTAMP_LTZ (windows align in the session zone).
    pub fn is_ltz(&self) -> bool {
        matches!(
            self.schema.field(self.time_index).data_type(),
            DataType::Timestamp(_, Some(_))
        )
    }
}

fn names(s: &Schema) -> String {
    s.fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl TableSource for WindowTvfSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}
