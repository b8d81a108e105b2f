//! THREAD (RFC 5256 §3): the ORDEREDSUBJECT and REFERENCES algorithms over already-read
//! message facts, and the parenthesised answer format (RFC 5256 §4, `thread-list`).
//!
//! Everything is iterative (explicit stacks, post-order lists) rather than recursive, because
//! a hostile mailbox can hold References chains thousands of messages deep.

use std::collections::HashMap;

use super::base_subject::BaseSubject;

/// The threading algorithms this server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    OrderedSubject,
    References,
}

impl Algorithm {
    /// Case-insensitive lookup of the algorithm named in the command.
    pub fn parse(name: &[u8]) -> Option<Algorithm> {
        if name.eq_ignore_ascii_case(b"ORDEREDSUBJECT") {
            Some(Algorithm::OrderedSubject)
        } else if name.eq_ignore_ascii_case(b"REFERENCES") {
            Some(Algorithm::References)
        } else {
            None
        }
    }
}

/// One message to thread.
#[derive(Debug, Clone)]
pub struct ThreadItem {
    /// Message sequence number: breaks ties between equal dates.
    pub msn: u32,
    /// What the answer names the message by (MSN, or UID for UID THREAD).
    pub id: u32,
    /// The sent date (RFC 5256 §2.2: the Date header, else the internal date).
    pub sent: i64,
    pub subject: BaseSubject,
    pub message_id: Option<String>,
    /// The message IDs of References, or else the first of In-Reply-To (RFC 5256 step 1.A).
    pub references: Vec<String>,
}

/// A node of the thread forest: a message, or a dummy standing for one that is not there.
#[derive(Debug, Clone, Default)]
struct Node {
    /// Index into the items; `None` for a dummy.
    item: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

/// The thread forest: nodes in an arena, and the top-level nodes in order.
#[derive(Debug, Default)]
struct Forest {
    nodes: Vec<Node>,
    roots: Vec<usize>,
}

impl Forest {
    fn add(&mut self, item: Option<usize>) -> usize {
        self.nodes.push(Node {
            item,
            ..Node::default()
        });
        self.nodes.len() - 1
    }

    /// Whether `node` is `ancestor` or lies below it.
    fn is_within(&self, mut node: usize, ancestor: usize) -> bool {
        loop {
            if node == ancestor {
                return true;
            }
            match self.nodes[node].parent {
                Some(p) => node = p,
                None => return false,
            }
        }
    }

    fn link(&mut self, parent: usize, child: usize) {
        self.nodes[child].parent = Some(parent);
        self.nodes[parent].children.push(child);
    }

    fn unlink(&mut self, child: usize) {
        if let Some(parent) = self.nodes[child].parent.take() {
            self.nodes[parent].children.retain(|&c| c != child);
        }
    }

    /// Every node below the roots, children before their parents.
    fn post_order(&self) -> Vec<usize> {
        let mut order = Vec::with_capacity(self.nodes.len());
        let mut stack: Vec<(usize, bool)> = self.roots.iter().rev().map(|&r| (r, false)).collect();
        while let Some((node, expanded)) = stack.pop() {
            if expanded {
                order.push(node);
            } else {
                stack.push((node, true));
                stack.extend(self.nodes[node].children.iter().rev().map(|&c| (c, false)));
            }
        }
        order
    }

    /// The (date, MSN) a node sorts by: its message's, or a dummy's first child's.
    fn sort_key(&self, items: &[ThreadItem], mut node: usize) -> (i64, u32) {
        loop {
            if let Some(i) = self.nodes[node].item {
                return (items[i].sent, items[i].msn);
            }
            match self.nodes[node].children.first() {
                Some(&c) => node = c,
                None => return (i64::MAX, u32::MAX),
            }
        }
    }

    /// The base subject of a top-level node: its message's, or a dummy's first child's.
    fn subject<'i>(&self, items: &'i [ThreadItem], mut node: usize) -> Option<&'i BaseSubject> {
        loop {
            if let Some(i) = self.nodes[node].item {
                return Some(&items[i].subject);
            }
            node = *self.nodes[node].children.first()?;
        }
    }

    fn sort_siblings(&mut self, items: &[ThreadItem], siblings: &mut [usize]) {
        siblings.sort_by_key(|&n| self.sort_key(items, n));
    }

    /// Writes the forest in the `thread-list` form, without the `* THREAD` prefix.
    fn write(&self, items: &[ThreadItem], out: &mut Vec<u8>) {
        enum Step {
            Node(usize),
            Open,
            Close,
            Space,
        }
        let mut stack: Vec<Step> = Vec::new();
        for &root in self.roots.iter().rev() {
            stack.push(Step::Close);
            stack.push(Step::Node(root));
            stack.push(Step::Open);
        }
        while let Some(step) = stack.pop() {
            let node = match step {
                Step::Open => {
                    out.push(b'(');
                    continue;
                }
                Step::Close => {
                    out.push(b')');
                    continue;
                }
                Step::Space => {
                    out.push(b' ');
                    continue;
                }
                Step::Node(node) => &self.nodes[node],
            };
            let numbered = node.item.map(|i| items[i].id);
            if let Some(id) = numbered {
                out.extend_from_slice(id.to_string().as_bytes());
            }
            match node.children.as_slice() {
                [] => {}
                // One child continues the same list: `1 2 3` is a chain.
                [only] => {
                    stack.push(Step::Node(*only));
                    if numbered.is_some() {
                        stack.push(Step::Space);
                    }
                }
                // Several children each get a list of their own: `1 (2)(3)`.
                many => {
                    for &child in many.iter().rev() {
                        stack.push(Step::Close);
                        stack.push(Step::Node(child));
                        stack.push(Step::Open);
                    }
                    if numbered.is_some() {
                        stack.push(Step::Space);
                    }
                }
            }
        }
    }
}

/// Threads `items` (in mailbox order) and writes the answer's data: `(1 2)(3 (4)(5))`, or
/// nothing when there are no messages.
pub fn thread(items: &[ThreadItem], algorithm: Algorithm, out: &mut Vec<u8>) {
    let forest = match algorithm {
        Algorithm::OrderedSubject => ordered_subject(items),
        Algorithm::References => references(items),
    };
    forest.write(items, out);
}

/// ORDEREDSUBJECT: sort by base subject then sent date, split into runs of equal subjects;
/// the first message of a run is the root and every later one its child (no grandchildren);
/// the threads are ordered by the sent date of their first message.
fn ordered_subject(items: &[ThreadItem]) -> Forest {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&items[a], &items[b]);
        (&a.subject.key, a.sent, a.msn).cmp(&(&b.subject.key, b.sent, b.msn))
    });
    let mut forest = Forest::default();
    let mut current: Option<(usize, &str)> = None;
    for i in order {
        let node = forest.add(Some(i));
        match current {
            Some((root, key)) if key == items[i].subject.key => forest.link(root, node),
            _ => {
                forest.roots.push(node);
                current = Some((node, &items[i].subject.key));
            }
        }
    }
    let mut roots = std::mem::take(&mut forest.roots);
    forest.sort_siblings(items, &mut roots);
    forest.roots = roots;
    forest
}

/// REFERENCES (RFC 5256 §3, steps 1 to 7).
fn references(items: &[ThreadItem]) -> Forest {
    let mut forest = Forest::default();
    // Step 1: link messages and the messages they refer to, through their IDs.
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        // 1.A: each reference is the parent of the next, unless the child already has a
        // parent or the link would make a loop.
        let mut previous: Option<usize> = None;
        for id in &item.references {
            let node = *by_id.entry(id.as_str()).or_insert_with(|| forest.add(None));
            if let Some(parent) = previous
                && forest.nodes[node].parent.is_none()
                && !forest.is_within(parent, node)
            {
                forest.link(parent, node);
            }
            previous = Some(node);
        }
        // 1.B: the message's own node. A message without an ID, or with an ID already taken
        // by another message, gets a node of its own that nothing can refer to.
        let own = match item.message_id.as_deref() {
            Some(id) => match by_id.get(id) {
                Some(&node) if forest.nodes[node].item.is_none() => {
                    forest.nodes[node].item = Some(i);
                    node
                }
                Some(_) => forest.add(Some(i)),
                None => {
                    let node = forest.add(Some(i));
                    by_id.insert(id, node);
                    node
                }
            },
            None => forest.add(Some(i)),
        };
        // The last reference is the parent; an existing parent (from a truncated References
        // of another message) gives way to it, and no references means no parent.
        forest.unlink(own);
        if let Some(parent) = previous
            && !forest.is_within(parent, own)
        {
            forest.link(parent, own);
        }
    }
    // Step 2 and 3: the root set is every node without a parent; the ID table is done.
    drop(by_id);
    forest.roots = (0..forest.nodes.len())
        .filter(|&n| forest.nodes[n].parent.is_none())
        .collect();
    prune(&mut forest);
    // Step 5: sort the root set by sent date (a dummy by its first child, its children sorted
    // first).
    let mut roots = std::mem::take(&mut forest.roots);
    for &root in &roots {
        if forest.nodes[root].item.is_none() {
            let mut children = std::mem::take(&mut forest.nodes[root].children);
            forest.sort_siblings(items, &mut children);
            forest.nodes[root].children = children;
        }
    }
    forest.sort_siblings(items, &mut roots);
    forest.roots = roots;
    group_by_subject(&mut forest, items);
    // Step 7: sort every set of siblings by sent date, the deepest first, so that a dummy's
    // first child is known when the dummy is placed.
    for node in forest.post_order() {
        let mut children = std::mem::take(&mut forest.nodes[node].children);
        forest.sort_siblings(items, &mut children);
        forest.nodes[node].children = children;
    }
    let mut roots = std::mem::take(&mut forest.roots);
    forest.sort_siblings(items, &mut roots);
    forest.roots = roots;
    forest
}

/// Step 4: dummies without children go; a dummy with children is replaced by them, except
/// at the top level where it stays unless it has only one child.
fn prune(forest: &mut Forest) {
    for node in forest.post_order() {
        let children = std::mem::take(&mut forest.nodes[node].children);
        let mut kept = Vec::with_capacity(children.len());
        for child in children {
            if forest.nodes[child].item.is_some() {
                kept.push(child);
            } else {
                // Already pruned (post-order): its children are final.
                let grandchildren = std::mem::take(&mut forest.nodes[child].children);
                forest.nodes[child].parent = None;
                for &g in &grandchildren {
                    forest.nodes[g].parent = Some(node);
                }
                kept.extend(grandchildren);
            }
        }
        forest.nodes[node].children = kept;
    }
    let roots = std::mem::take(&mut forest.roots);
    let mut kept = Vec::with_capacity(roots.len());
    for root in roots {
        let node = &forest.nodes[root];
        if node.item.is_some() || node.children.len() > 1 {
            kept.push(root);
        } else if let Some(&only) = node.children.first() {
            forest.nodes[root].children.clear();
            forest.nodes[only].parent = None;
            kept.push(only);
        }
    }
    forest.roots = kept;
}

/// Step 6: gather top-level threads with the same base subject.
fn group_by_subject(forest: &mut Forest, items: &[ThreadItem]) {
    // 6.A and 6.B: one top-level node per subject, preferring dummies, then non-replies.
    let mut table: HashMap<&str, usize> = HashMap::new();
    for &root in &forest.roots {
        let Some(subject) = forest.subject(items, root) else {
            continue;
        };
        if subject.key.is_empty() {
            continue;
        }
        match table.get(subject.key.as_str()) {
            None => {
                table.insert(&subject.key, root);
            }
            Some(&there) => {
                let there_is_reply = forest.nodes[there]
                    .item
                    .is_some_and(|i| items[i].subject.reply_or_forward);
                let replace = forest.nodes[there].item.is_some()
                    && (forest.nodes[root].item.is_none()
                        || (there_is_reply && !subject.reply_or_forward));
                if replace {
                    table.insert(&subject.key, root);
                }
            }
        }
    }
    // 6.C: merge every other top-level node with that subject into the one in the table.
    let roots = std::mem::take(&mut forest.roots);
    let mut removed = vec![false; forest.nodes.len()];
    let mut added: Vec<usize> = Vec::new();
    for &root in &roots {
        let Some(subject) = forest.subject(items, root) else {
            continue;
        };
        if subject.key.is_empty() {
            continue;
        }
        let Some(&there) = table.get(subject.key.as_str()) else {
            continue;
        };
        if there == root {
            continue;
        }
        let root_dummy = forest.nodes[root].item.is_none();
        let there_dummy = forest.nodes[there].item.is_none();
        let reply = |n: usize| {
            forest.nodes[n]
                .item
                .is_some_and(|i| items[i].subject.reply_or_forward)
        };
        if root_dummy && there_dummy {
            // Both dummies: the children of both become siblings.
            let children = std::mem::take(&mut forest.nodes[root].children);
            for child in children {
                forest.link(there, child);
            }
        } else if there_dummy || (reply(root) && !reply(there)) {
            forest.link(there, root);
        } else {
            // Neither is a dummy (the table prefers dummies): a new dummy takes both.
            let dummy = forest.add(None);
            removed.push(false);
            forest.link(dummy, there);
            forest.link(dummy, root);
            removed[there] = true;
            added.push(dummy);
            table.insert(&subject.key, dummy);
        }
        removed[root] = true;
    }
    forest.roots = roots
        .into_iter()
        .chain(added)
        .filter(|&r| !removed[r])
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::base_subject::extract;

    /// (msn, sent, subject, message-id, references)
    type Spec<'a> = (u32, i64, &'a str, Option<&'a str>, &'a [&'a str]);

    fn items(spec: &[Spec<'_>]) -> Vec<ThreadItem> {
        spec.iter()
            .map(|&(msn, sent, subject, id, refs)| ThreadItem {
                msn,
                id: msn,
                sent,
                subject: extract(subject),
                message_id: id.map(str::to_owned),
                references: refs.iter().map(|r| (*r).to_owned()).collect(),
            })
            .collect()
    }

    fn run(items: &[ThreadItem], algorithm: Algorithm) -> String {
        let mut out = Vec::new();
        thread(items, algorithm, &mut out);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn ordered_subject() {
        let m = items(&[
            (1, 10, "b", None, &[]),
            (2, 5, "Re: a", None, &[]),
            (3, 7, "a", None, &[]),
            (4, 8, "re: B", None, &[]),
            (5, 1, "c", None, &[]),
            (6, 9, "A", None, &[]),
        ]);
        assert_eq!(run(&m, Algorithm::OrderedSubject), "(5)(2 (3)(6))(4 1)");
        assert_eq!(run(&[], Algorithm::OrderedSubject), "");
    }

    #[test]
    fn references_chain_and_branches() {
        let m = items(&[
            (1, 1, "topic", Some("a@x"), &[]),
            (2, 2, "Re: topic", Some("b@x"), &["a@x"]),
            (3, 3, "Re: topic", Some("c@x"), &["a@x", "b@x"]),
            (4, 4, "Re: topic", Some("d@x"), &["a@x"]),
            (5, 0, "other", Some("e@x"), &[]),
        ]);
        assert_eq!(run(&m, Algorithm::References), "(5)(1 (2 3)(4))");
    }

    #[test]
    fn missing_parents_become_dummies() {
        // 2 and 3 answer a message that is not there: a dummy root holds both.
        let m = items(&[
            (1, 1, "x", Some("x@x"), &[]),
            (2, 2, "Re: lost", Some("b@x"), &["gone@x"]),
            (3, 3, "Re: lost", Some("c@x"), &["gone@x"]),
            // A single child of a missing root is promoted to the top.
            (4, 4, "solo", Some("d@x"), &["gone2@x"]),
            // Missing middle: the dummy between 1 and 5 is spliced out.
            (5, 5, "Re: x", Some("e@x"), &["x@x", "mid@x"]),
        ]);
        assert_eq!(run(&m, Algorithm::References), "(1 5)((2)(3))(4)");
    }

    #[test]
    fn loops_and_duplicates() {
        let m = items(&[
            // References that loop back on themselves and on the message.
            (1, 1, "l", Some("a@x"), &["b@x", "a@x", "b@x"]),
            (2, 2, "l2", Some("b@x"), &["a@x"]),
            // The same ID twice: the second copy stands alone, references go to the first.
            (3, 3, "dup", Some("d@x"), &[]),
            (4, 4, "dup2", Some("d@x"), &[]),
            (5, 5, "Re: dup", Some("e@x"), &["d@x"]),
        ]);
        // 1 names b as its parent; 2 naming a would close a loop, so 2 is the root.
        assert_eq!(run(&m, Algorithm::References), "(2 1)(3 5)(4)");
    }

    #[test]
    fn subjects_group_threads() {
        let m = items(&[
            (1, 1, "meeting", Some("a@x"), &[]),
            // A reply that lost its references joins by subject, as a child.
            (2, 2, "Re: meeting", Some("b@x"), &[]),
            // Two originals with one subject: a dummy takes both.
            (3, 3, "plan", Some("c@x"), &[]),
            (4, 4, "plan", Some("d@x"), &[]),
            // An empty subject never groups.
            (5, 5, "", Some("e@x"), &[]),
            (6, 6, "Re:", Some("f@x"), &[]),
        ]);
        assert_eq!(run(&m, Algorithm::References), "(1 2)((3)(4))(5)(6)");
        // The original comes after its reply: the reply is the table's entry at first but
        // gives way to the original.
        let m = items(&[
            (1, 1, "Re: news", Some("b@x"), &[]),
            (2, 2, "news", Some("a@x"), &[]),
        ]);
        assert_eq!(run(&m, Algorithm::References), "(2 1)");
    }

    #[test]
    fn ties_use_sequence_numbers() {
        let m = items(&[
            (1, 5, "a", Some("a@x"), &[]),
            (2, 5, "Re: a", Some("b@x"), &["a@x"]),
            (3, 5, "Re: a", Some("c@x"), &["a@x"]),
            (4, 5, "z", Some("z@x"), &[]),
        ]);
        assert_eq!(run(&m, Algorithm::References), "(1 (2)(3))(4)");
    }

    #[test]
    fn deep_chains_do_not_recurse() {
        let ids: Vec<String> = (0..3_000).map(|i| format!("m{i}@x")).collect();
        let m: Vec<ThreadItem> = (0..3_000u32)
            .map(|i| ThreadItem {
                msn: i + 1,
                id: i + 1,
                sent: i64::from(i),
                subject: extract("deep"),
                message_id: Some(ids[i as usize].clone()),
                references: if i == 0 {
                    vec![]
                } else {
                    vec![ids[i as usize - 1].clone()]
                },
            })
            .collect();
        let out = run(&m, Algorithm::References);
        assert!(out.starts_with("(1 2 3 "));
        assert!(out.ends_with(" 3000)"));
    }
}
