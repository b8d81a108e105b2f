//! Maildir storage, compatible with what Dovecot and Courier write (Maildir++ folders), so an
//! existing spool can be served and users can move either way.
//!
//! Layout: user `U`'s Maildir root is `<spool>/mail/U/` (INBOX: `cur/ new/ tmp/`); folder
//! `Work.Projects` is `<root>/.Work.Projects/`, names on disk in modified UTF-7. Per folder:
//! messages in `cur/<base>:2,<flags>` and `new/<base>`; keywords in Dovecot's
//! `dovecot-keywords`; UIDs in hato's `hato-uidlist` (imported from Dovecot's
//! `dovecot-uidlist` when missing). Subscriptions in Dovecot's `subscriptions` in the root.
//!
//! * [`user`]: [`Store`], [`UserMail`] (folder tree, subscriptions) and the shared table that
//!   gives every session the same [`Mailbox`].
//! * [`mailbox`]: one folder's index, scan, append, flags, expunge, copy.
//! * [`flags`]: message flags and their Maildir letters.
//! * [`modseq`]: CONDSTORE/QRESYNC mod-sequences, their log `hato-modseq` and the remembered
//!   expunges for VANISHED.
//! * [`quota`]: per-user STORAGE/MESSAGE limits (RFC 9208), usage in Maildir++'s
//!   `maildirsize`, checked before every write that adds messages.
//! * `names`, `uidlist`, `keywords`, `subscriptions`, `fsutil`: file formats and helpers.
//!
//! Crash safety: a message is written to `tmp/`, fsynced, renamed into `new/` or `cur/`, the
//! directory fsynced, and its UID persisted before the write is acknowledged. UIDs never
//! repeat: the next UID only grows, and a UIDVALIDITY is made once per folder. Mod-sequences
//! never go back or repeat either, across crashes too (see [`modseq`]).

mod error;
pub mod flags;
mod fsutil;
mod keywords;
pub mod mailbox;
pub mod modseq;
mod names;
pub mod quota;
mod special_use;
mod subscriptions;
mod uidlist;
pub mod user;

#[cfg(test)]
mod modseq_tests;
#[cfg(test)]
mod tests;

pub use error::StoreError;
pub use flags::{FlagMode, Flags};
pub use keywords::Keywords;
pub use mailbox::{
    Change, ChangeLog, Index, Mailbox, MessageMeta, StoreFlagsResult, StoredFlags, SyncResult,
};
pub use modseq::{Incomplete, Vanished};
pub use quota::{ConfiguredQuota, QuotaLimits, QuotaPolicy, QuotaState, QuotaUsage};
pub use user::{MailboxInfo, SpecialUse, Store, UserMail};
