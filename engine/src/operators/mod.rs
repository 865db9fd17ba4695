//! One operator per file; each is a synchronous state machine behind [`crate::operator::Operator`].

pub mod filter;
pub mod group_aggregate;
mod group_state;
pub mod groups;
pub mod key_index;
pub mod project;
pub mod rank;
pub mod retract;
pub mod session_aggregate;
pub mod spill;
pub mod window_aggregate;
pub mod window_assign;
pub mod window_updates;
