#![doc = include_str!("../README.md")]

pub use flowfail_core::*;
