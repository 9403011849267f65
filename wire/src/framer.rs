//! framer (in progress)
