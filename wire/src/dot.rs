//! dot (in progress)
