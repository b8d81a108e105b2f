//! Placeholder: IMAP dates are being written.
