//! Placeholder: sequence sets are being written.
