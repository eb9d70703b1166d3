//! Jobs: what a command does, from its request to its outcome. A job reads
//! the config once, asks `detect`, `backend`, `gate`, `report` and
//! `publish` in turn, and returns what happened; the CLI only turns that
//! into an exit code.

pub mod check;
pub mod cloud;
pub mod deploy;
pub mod init;
pub mod push;
pub mod run;
pub mod serve;
pub mod validate;
pub mod visualize;
