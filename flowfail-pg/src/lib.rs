#![doc = include_str!("../README.md")]

mod conn;
mod incidents;
mod tasks;

pub use conn::{
    CONNECT_TIMEOUT, POOL_WAIT_TIMEOUT, STATEMENT_TIMEOUT, TCP_USER_TIMEOUT, connect,
    connect_config, sql_state,
};
pub use incidents::PgIncidentStore;
pub use tasks::{PgTaskStore, TaskColumns, TaskFilter, TaskStatuses, TaskTable};
