//! mailferry-smtp-server (in progress)
