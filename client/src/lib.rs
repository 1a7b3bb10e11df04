//! mco-client: discovery, RPC, aggregation and output for the `mco` command line tool.

#![warn(missing_docs)]

pub mod output;
