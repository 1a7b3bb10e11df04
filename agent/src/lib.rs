//! The mco responder: the daemon every managed node runs.
#![warn(missing_docs)]

pub mod facts;
