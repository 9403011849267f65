//! The `mailferry` command.
fn main() {}
