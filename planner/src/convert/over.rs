//! OVER aggregates: `AGG(x) OVER (PARTITION BY k ORDER BY ts RANGE BETWEEN INTERVAL ..
//! PRECEDING AND CURRENT ROW)` or `ROWS BETWEEN n PRECEDING AND CURRENT ROW`, also through a
//! `WINDOW w AS (...)` clause. Every OVER function of the query must share one window, ordered
//! by the input's event time, and be an aggregate that can take rows back out of its frame.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::{AggregateFunction, WindowFunction};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, Window, WindowFrame, WindowFrameBound, WindowFrameUnits, WindowFunctionDefinition,
};
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;

use super::{column_role, Converted, Converter, Role};
use crate::error::{PlanError, Result};
use crate::over_plan::{OverFrame, OverNode};
use crate::stream_plan::StreamNode;

impl Converter<'_> {
    /// An OVER aggregation (any window node that is not a row-number filter).
    pub(super) fn over(&mut self, w: &Window) -> Result<Converted> {
        let input = self.convert(&w.input)?;
        if input.node.is_updating() {
            return Err(PlanError::unsupported(
                "OVER aggregates over an updating input",
                "Apply the OVER aggregate to the table's rows, before any GROUP BY",
            ));
        }
        let functions = w
            .window_expr
            .iter()
            .map(window_function)
            .collect::<Result<Vec<_>>>()?;
        let first = functions[0];
        if functions.iter().any(|f| !same_window(f, first)) {
            return Err(PlanError::unsupported(
                "OVER functions with different windows in one query",
                "Give them one window (WINDOW w AS (...) and OVER w)",
            ));
        }
        let in_schema = w.input.schema();
        let (time_index, unit) = self.over_order(first, w, &input)?;
        let frame = over_frame(&first.params.window_frame)?;
        let partition = first
            .params
            .partition_by
            .iter()
            .map(|e| self.phys(e, in_schema))
            .collect::<Result<Vec<_>>>()?;
        let n_in = in_schema.fields().len();
        let (mut aggregates, mut filters) = (Vec::new(), Vec::new());
        for (i, f) in functions.iter().enumerate() {
            let name = w.schema.field(n_in + i).name().clone();
            let (agg, filter) = self.over_aggregate(f, w, name)?;
            aggregates.push(agg);
            filters.push(filter);
        }
        let mut roles = input.roles;
        roles.extend(std::iter::repeat_n(Role::Plain, functions.len()));
        let node = StreamNode::Over(OverNode {
            input: Box::new(input.node),
            partition,
            time_index,
            unit,
            frame,
            aggregates,
            filters,
            schema: Arc::new(w.schema.as_arrow().clone()),
        });
        Ok(Converted { node, roles })
    }

    /// The ORDER BY of an OVER window: one ascending event-time column.
    fn over_order(
        &self,
        f: &WindowFunction,
        w: &Window,
        input: &Converted,
    ) -> Result<(usize, TimeUnit)> {
        let bad = || {
            PlanError::unsupported(
                "an OVER window not ordered by the input's event time",
                "Order it by the event-time column only, ascending: ORDER BY ts",
            )
        };
        let [sort] = f.params.order_by.as_slice() else {
            return Err(bad());
        };
        let Expr::Column(c) = &sort.expr else {
            return Err(bad());
        };
        let index = w.input.schema().index_of_column(c).map_err(|_| bad())?;
        let rowtime = column_role(&sort.expr, w.input.schema(), &input.roles) == Role::Rowtime;
        match (sort.asc, rowtime, w.input.schema().field(index).data_type()) {
            (true, true, DataType::Timestamp(unit, _)) => Ok((index, *unit)),
            _ => Err(bad()),
        }
    }

    /// The aggregate of an OVER function, bound to the window's input, and its FILTER.
    fn over_aggregate(
        &self,
        f: &WindowFunction,
        w: &Window,
        name: String,
    ) -> Result<(
        Arc<datafusion::physical_expr::aggregate::AggregateFunctionExpr>,
        Option<super::PhysExpr>,
    )> {
        let Some(udf) = aggregate_udf(f) else {
            return Err(not_an_aggregate(f));
        };
        let p = &f.params;
        let agg = Expr::AggregateFunction(AggregateFunction::new_udf(
            udf.clone(),
            p.args.clone(),
            p.distinct,
            p.filter.clone(),
            vec![],
            p.null_treatment,
        ));
        let in_schema = w.input.schema();
        let phys_in = Arc::new(in_schema.as_arrow().clone());
        let planning = PhysicalPlanningContext::default();
        let lowered = LoweredAggregateBuilder::new(
            &agg,
            in_schema,
            &phys_in,
            self.state.execution_props(),
            &planning,
        )
        .with_name(name)
        .with_human_display(agg.schema_name().to_string())
        .build()?;
        // FIRST_VALUE and LAST_VALUE are read off the frame's rows (see the operator).
        let positional = matches!(udf.name(), "first_value" | "last_value") && !p.distinct;
        let slides = positional
            || lowered
                .aggregate
                .create_sliding_accumulator()
                .is_ok_and(|a| a.supports_retract_batch());
        if !slides {
            return Err(PlanError::unsupported(
                format!(
                    "{}{}() over a sliding OVER frame",
                    udf.name().to_uppercase(),
                    if p.distinct { " DISTINCT" } else { "" }
                ),
                "It cannot take rows back out of its frame; COUNT, SUM, AVG, MIN, MAX, STDDEV, \
                 VAR, FIRST_VALUE and LAST_VALUE can",
            ));
        }
        Ok((lowered.aggregate, lowered.filter))
    }
}

fn window_function(e: &Expr) -> Result<&WindowFunction> {
    let e = match e {
        Expr::Alias(a) => a.expr.as_ref(),
        other => other,
    };
    match e {
        Expr::WindowFunction(f) if aggregate_udf(f).is_some() => Ok(f),
        Expr::WindowFunction(f) => Err(not_an_aggregate(f)),
        _ => Err(PlanError::Internal("window expression expected".into())),
    }
}

/// The aggregate an OVER function computes: an aggregate's own, or for the window functions
/// FIRST_VALUE and LAST_VALUE the aggregates of those names (the operator reads them off the
/// frame).
fn aggregate_udf(f: &WindowFunction) -> Option<Arc<datafusion::logical_expr::AggregateUDF>> {
    use datafusion::functions_aggregate::first_last::{first_value_udaf, last_value_udaf};
    match &f.fun {
        WindowFunctionDefinition::AggregateUDF(udf) => Some(udf.clone()),
        WindowFunctionDefinition::WindowUDF(w) => match w.name() {
            "first_value" => Some(first_value_udaf()),
            "last_value" => Some(last_value_udaf()),
            _ => None,
        },
    }
}

fn not_an_aggregate(f: &WindowFunction) -> PlanError {
    PlanError::unsupported(
        format!("{}() OVER (..) on a stream", f.fun.name()),
        "Use an aggregate (COUNT, SUM, AVG, MIN, MAX, STDDEV, VAR, FIRST_VALUE, LAST_VALUE) over \
         the window, or ROW_NUMBER() filtered to the first N rows",
    )
}

fn same_window(a: &WindowFunction, b: &WindowFunction) -> bool {
    a.params.partition_by == b.params.partition_by
        && a.params.order_by == b.params.order_by
        && a.params.window_frame == b.params.window_frame
}

/// `RANGE BETWEEN INTERVAL .. PRECEDING AND CURRENT ROW` or `ROWS BETWEEN n PRECEDING AND
/// CURRENT ROW`.
fn over_frame(f: &WindowFrame) -> Result<OverFrame> {
    let bad = |what: &str| {
        PlanError::unsupported(
            format!("an OVER window {what}"),
            "Use RANGE BETWEEN INTERVAL '5' MINUTE PRECEDING AND CURRENT ROW, or ROWS BETWEEN 10 \
             PRECEDING AND CURRENT ROW",
        )
    };
    if f.end_bound != WindowFrameBound::CurrentRow {
        return Err(bad(
            "that ends after the current row (rows arriving later would change it)",
        ));
    }
    let WindowFrameBound::Preceding(start) = &f.start_bound else {
        return Err(bad("that starts at or after the current row"));
    };
    if start.is_null() {
        return Err(bad(
            "from UNBOUNDED PRECEDING (its state would never shrink)",
        ));
    }
    match f.units {
        WindowFrameUnits::Rows => match start {
            ScalarValue::UInt64(Some(n)) => Ok(OverFrame::Rows(*n)),
            _ => Err(bad("with a ROWS bound that is not a number")),
        },
        WindowFrameUnits::Range => crate::interval::scalar_ns(start)
            .map(OverFrame::Range)
            .ok_or_else(|| bad("with a RANGE bound that is not a day-time interval")),
        WindowFrameUnits::Groups => Err(bad("in GROUPS")),
    }
}
