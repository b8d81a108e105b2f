//! Rendezvous (highest-random-weight) hashing: which node owns a user.
//!
//! Every node gets a pseudo-random weight for the user, computed from the node's id and the
//! user's name alone; the node with the highest weight owns the user. Because a weight does
//! not depend on the other nodes, adding a node moves only the users for whom the new node
//! weighs most (about 1/(N+1) of them, and all of them *to* the new node), and removing one
//! moves only that node's users (each to its runner-up). Unlike a hash ring there are no
//! virtual nodes to tune and no table to keep: the node list is all the state.
//!
//! The hash must give the same answer on every director, after every upgrade, forever: a
//! changed hash would move users between nodes that do not share storage. So it is spelled
//! out here instead of taken from `std` (whose `DefaultHasher` may change between Rust
//! releases) or from a crate (whose output could change with a major version): 64-bit FNV-1a
//! of the bytes, finished with MurmurHash3's `fmix64`, which spreads FNV's weak low bits over
//! the whole word. The weight of a (node, user) pair is `fmix64(fmix64(fnv(node)) ^
//! fnv(user))`; the tests pin known values, so an accidental change fails them.

/// FNV-1a, 64-bit: offset basis and prime.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// The weight of node `node` (its id) for the user whose name hashes to `user_hash`.
fn weight(node: &str, user_hash: u64) -> u64 {
    fmix64(fmix64(fnv1a(node.as_bytes())) ^ user_hash)
}

/// The item of `nodes` that owns `user`: the highest weight, ties (which need a 64-bit
/// collision) broken by the smaller id so every director agrees. `None` without nodes.
pub fn owner<'a, T>(nodes: &'a [T], id: impl Fn(&T) -> String, user: &str) -> Option<&'a T> {
    let user_hash = fnv1a(user.as_bytes());
    nodes
        .iter()
        .map(|node| {
            let id = id(node);
            (weight(&id, user_hash), id, node)
        })
        // Highest weight; among equal weights the smallest id (reversed comparison).
        .max_by(|(wa, ia, _), (wb, ib, _)| wa.cmp(wb).then_with(|| ib.cmp(ia)))
        .map(|(_, _, node)| node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("imap{i}")).collect()
    }

    fn pick<'a>(nodes: &'a [String], user: &str) -> &'a str {
        owner(nodes, String::clone, user).expect("a node")
    }

    fn users(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("user{i}@example.com")).collect()
    }

    /// The hash is part of the on-disk contract (users' mail lives where it points): these
    /// values must never change.
    #[test]
    fn hash_is_pinned() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fmix64(0), 0);
        assert_eq!(weight("imap1", fnv1a(b"alice")), 0xf1f2_ef97_397c_c0b5);
        let nodes = names(3);
        let got: Vec<&str> = ["alice", "bob", "carol", "dave", "erin", "frank"]
            .iter()
            .map(|u| pick(&nodes, u))
            .collect();
        assert_eq!(got, PINNED_OWNERS);
    }

    /// Owners of alice..frank among imap0..imap2 (see `hash_is_pinned`).
    const PINNED_OWNERS: [&str; 6] = ["imap1", "imap2", "imap2", "imap0", "imap1", "imap2"];

    #[test]
    fn no_nodes_no_owner() {
        let none: [String; 0] = [];
        assert!(owner(&none, String::clone, "alice").is_none());
        let one = names(1);
        assert_eq!(pick(&one, "alice"), "imap0");
    }

    #[test]
    fn order_of_the_list_does_not_matter() {
        let nodes = names(5);
        let mut reversed = nodes.clone();
        reversed.reverse();
        for user in users(2000) {
            assert_eq!(pick(&nodes, &user), pick(&reversed, &user));
        }
    }

    #[test]
    fn users_spread_evenly() {
        const USERS: usize = 100_000;
        for n in [2, 3, 5, 10] {
            let nodes = names(n);
            let mut counts = vec![0usize; n];
            for user in users(USERS) {
                let owner = pick(&nodes, &user);
                let i = nodes.iter().position(|x| x == owner).expect("known");
                counts[i] += 1;
            }
            let fair = USERS / n;
            for (i, &c) in counts.iter().enumerate() {
                // Binomial noise is ~0.5 % of a share here; 5 % is a real imbalance.
                assert!(
                    c.abs_diff(fair) * 20 < fair,
                    "{n} nodes: imap{i} owns {c} users, fair share {fair}: {counts:?}"
                );
            }
        }
    }

    #[test]
    fn adding_a_node_moves_only_its_share_to_it() {
        const USERS: usize = 100_000;
        for n in [2, 3, 4, 9] {
            let before = names(n);
            let after = names(n + 1);
            let added = &after[n];
            let mut moved = 0usize;
            for user in users(USERS) {
                let old = pick(&before, &user);
                let new = pick(&after, &user);
                if old != new {
                    assert_eq!(
                        new, added,
                        "{user} moved from {old} to {new}, not the new node"
                    );
                    moved += 1;
                }
            }
            let expected = USERS / (n + 1);
            assert!(
                moved.abs_diff(expected) * 20 < expected,
                "{n} -> {} nodes moved {moved} users, expected about {expected}",
                n + 1
            );
        }
    }

    #[test]
    fn removing_a_node_moves_only_its_users() {
        const USERS: usize = 100_000;
        let before = names(4);
        let removed = &before[1];
        let after: Vec<String> = before.iter().filter(|n| *n != removed).cloned().collect();
        let mut moved = 0usize;
        for user in users(USERS) {
            let old = pick(&before, &user);
            let new = pick(&after, &user);
            if old == removed {
                moved += 1;
            } else {
                assert_eq!(old, new, "{user} moved though its node stayed");
            }
        }
        assert!(moved.abs_diff(USERS / 4) * 20 < USERS / 4, "{moved}");
    }
}
