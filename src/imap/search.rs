//! Placeholder: SEARCH is being written.
