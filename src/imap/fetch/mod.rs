//! Placeholder: FETCH is being written.
