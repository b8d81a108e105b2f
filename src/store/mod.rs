//! Placeholder: the Maildir store is being written.

pub mod flags;
