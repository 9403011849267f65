//! mailferry-pop3-client (in progress)
