//! (issue in progress)
