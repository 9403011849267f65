//! tls (in progress)
