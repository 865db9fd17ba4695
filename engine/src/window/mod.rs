//! Window arithmetic for the window operators (see [`kernels`]): which windows a row belongs to,
//! as Arrow kernels over whole batches.

pub mod kernels;

pub use kernels::{
    assign_windows, fire_time_ns, session_bounds, to_ns, to_wall, window_time, Assignments,
    TimeContext, UnitKind, UnitSpec,
};
