#![doc = include_str!("../README.md")]

mod conn;
mod incidents;
mod tasks;

pub use conn::{
    CONNECT_TIMEOUT, POOL_WAIT_TIMEOUT, STATEMENT_TIMEOUT, TCP_USER_TIMEOUT, connect,
    connect_config, sql_state,
};
/// The connection pool [`connect`] builds (deadpool's), shared by the stores built on it.
pub use deadpool_postgres::Pool;
pub use incidents::PgIncidentStore;
pub use tasks::{PgTaskStore, TaskColumns, TaskFilter, TaskStatuses, TaskTable};
