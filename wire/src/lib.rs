//! mailferry-wire: placeholder, see the modules.
pub mod dot;
pub mod framer;
#[cfg(feature = "tokio")]
pub mod net;
pub mod pop3;
pub mod smtp;
pub mod testing;
pub mod tls;
pub mod types;
