//! One operator per file; each is a synchronous state machine behind [`crate::operator::Operator`].

pub mod filter;
pub mod groups;
pub mod project;
pub mod session_aggregate;
pub mod spill;
pub mod window_aggregate;
pub mod window_assign;
