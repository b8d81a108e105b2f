//! The live settings shared by all workers.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use super::error::Problem;
use super::settings::{Change, Settings};
use super::tree::RegTree;

/// Live settings shared by all workers: reading is a lock-free pointer load; a reload is a
/// pointer swap. Cloning shares the same snapshot.
#[derive(Clone)]
pub struct SharedSettings(Arc<ArcSwap<Settings>>);

impl std::fmt::Debug for SharedSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SharedSettings")
            .field(&**self.0.load())
            .finish()
    }
}

/// What [`SharedSettings::reload`] did.
#[derive(Debug, Clone)]
pub struct Reload {
    /// The snapshot now in force.
    pub settings: Arc<Settings>,
    /// The settings whose value changed, in table order.
    pub changes: Vec<Change>,
    /// Problems found in the tree (each already logged at `warn`).
    pub problems: Vec<Problem>,
}

impl SharedSettings {
    pub fn new(s: Settings) -> Self {
        SharedSettings(Arc::new(ArcSwap::from_pointee(s)))
    }

    /// The current snapshot, cheaply; hold the guard only briefly (e.g. for one command).
    pub fn load(&self) -> Guard<Arc<Settings>> {
        self.0.load()
    }

    /// The current snapshot as an owned `Arc`, for keeping across awaits or long stretches.
    pub fn load_full(&self) -> Arc<Settings> {
        self.0.load_full()
    }

    /// Replace the snapshot.
    pub fn store(&self, s: Settings) {
        self.0.store(Arc::new(s));
    }

    /// Re-read `tree` over the current snapshot (an invalid file keeps its current value) and
    /// swap the result in. Logs each problem at `warn` and each change at `info`.
    pub fn reload(&self, tree: &RegTree) -> Reload {
        let mut problems = Vec::new();
        let mut changes = Vec::new();
        let mut stored = None;
        // `rcu` retries if another store raced with the load, so the result is always
        // derived from the snapshot it replaces.
        self.0.rcu(|current| {
            let report = tree.load_over(current);
            problems = report.problems;
            changes = current.changes(&report.settings);
            let new = Arc::new(report.settings);
            stored = Some(Arc::clone(&new));
            new
        });
        for p in &problems {
            tracing::warn!(path = %p.path.display(), kind = p.kind.as_str(), "reg tree: {}", p.reason);
        }
        for c in &changes {
            tracing::info!(setting = c.def.name, old = %c.old, new = %c.new, "reg tree: setting changed");
        }
        Reload {
            settings: stored.unwrap_or_else(|| self.load_full()),
            changes,
            problems,
        }
    }
}

impl Default for SharedSettings {
    fn default() -> Self {
        SharedSettings::new(Settings::default())
    }
}
