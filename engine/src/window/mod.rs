//! Window assignment for the tumble, hop and cumulate window operators (see [`assign`]).

pub mod assign;

pub use assign::{
    assign_windows, fire_time_ns, session_bounds, to_ns, to_wall, window_time, Assignments,
    TimeContext, UnitKind, UnitSpec,
};
