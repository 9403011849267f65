//! mailferry-smtp-client (in progress)
