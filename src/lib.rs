//! hato: an IMAP4 server for very large mail sites.
//!
//! The crate is split by concern; each module's doc comment says what it owns.
//!
//! * [`runtime`]: worker threads (one per core, each with its own io_uring ring, listener and
//!   session slab) and the connection driver that moves bytes between sockets and sessions.
//! * [`imap`]: the protocol, free of I/O: the zero-copy command scanner, argument parsing,
//!   response encoding and the session state machine with its command handlers.
//! * [`auth`]: the Dovecot-format passwd-file and its password schemes.
//! * [`config`]: the E-Post reg tree (`<spool>/reg/epost/ims/EPST5IMAP4S/`) and the live
//!   settings snapshot.
//! * [`store`]: Maildir storage: folders, UIDs, flags, the shared per-mailbox index.
//! * [`tls`]: the certificate, loaded into the rustls configuration workers share, and its
//!   reloads.
//! * [`lmtp`]: mail delivery: the LMTP server MTAs deliver to, and `hato deliver`.
//! * [`metrics`]: the Prometheus exporter and the metric names.
//! * [`director`]: `hato director`, the login router behind nginx's mail proxy for sites
//!   with several nodes (rendezvous hashing of users over the nodes).
//! * [`cli`]: the `hato` command line.

pub mod auth;
pub mod cli;
pub mod config;
pub mod director;
pub mod imap;
pub mod lmtp;
pub mod metrics;
pub mod runtime;
pub mod store;
mod sys;
pub mod tls;
