#![doc = include_str!("../README.md")]

mod conn;
mod incidents;
mod tasks;

pub use conn::{connect, connect_config, sql_state};
pub use incidents::PgIncidentStore;
pub use tasks::{PgTaskStore, TaskColumns, TaskTable};
