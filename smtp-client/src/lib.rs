//! mailferry-smtp-client (docs below are completed with the shell).

pub mod proto;
