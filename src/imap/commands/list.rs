//! LIST-EXTENDED (RFC 5258) with the SPECIAL-USE selection and return options (RFC 6154 §2)
//! and LIST-STATUS (RFC 5819).
//!
//! `LIST [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]`: a LIST with
//! selection options, several patterns in parentheses or return options is an extended LIST;
//! the plain form keeps the RFC 3501 answer of [`super::mailbox::list`] byte for byte.
//!
//! Parsing and the choice of names ([`select`]) are pure; the listing and the STATUS of each
//! selectable mailbox are read in a [`Work`](super::super::session::Work), off the worker
//! thread, and the session's own view is used for its selected mailbox.

use std::collections::{HashMap, HashSet};

use super::super::parser::{Args, ParseError, Token};
use super::super::response::{self, Status};
use super::super::session::{Context, Outcome, Session};
use super::mailbox::{
    SEPARATOR, StatusItem, StatusValues, decode_name, pattern_matches, status_items, with_mail,
    write_mailbox_name, write_status,
};
use crate::store::MailboxInfo;

/// The options of one LIST command (RFC 5258 §3 selection options, §4 return options).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ListOptions {
    /// Any extended syntax was used: `\NonExistent` replaces `\Noselect` for names that are
    /// not mailboxes (§3: it implies `\Noselect`).
    pub extended: bool,
    /// Selection: SUBSCRIBED (§3.1).
    pub select_subscribed: bool,
    /// Selection: SPECIAL-USE (RFC 6154 §2).
    pub select_special_use: bool,
    /// Selection: RECURSIVEMATCH (§3.5), never alone.
    pub recursive: bool,
    /// Return: SUBSCRIBED (§4), also implied by the SUBSCRIBED selection option.
    pub return_subscribed: bool,
    /// Return: STATUS items (RFC 5819 §2); empty when not asked for.
    pub status: Vec<StatusItem>,
}

/// A parsed LIST command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListCommand {
    pub reference: String,
    /// Decoded patterns, at least one.
    pub patterns: Vec<String>,
    pub options: ListOptions,
}

/// Why a LIST was refused before anything was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListError {
    Syntax(ParseError),
    /// RECURSIVEMATCH without a base selection option (RFC 5258 §3: answered with BAD).
    RecursiveAlone,
    /// A selection or return option this server does not know (§3, §4: BAD).
    UnknownOption,
}

impl From<ParseError> for ListError {
    fn from(e: ParseError) -> Self {
        ListError::Syntax(e)
    }
}

/// The next non-space byte of the arguments.
fn peek(args: &Args<'_>) -> Option<u8> {
    args.rest().iter().find(|&&b| b != b' ').copied()
}

/// Parses the arguments of LIST, plain or extended; names and patterns are UTF-8 when `utf8`
/// (an IMAP4rev2 session, RFC 9051 §5.1), modified UTF-7 otherwise.
pub(crate) fn parse(args: &mut Args<'_>, utf8: bool) -> Result<ListCommand, ListError> {
    let mut options = ListOptions::default();
    if peek(args) == Some(b'(') {
        options.extended = true;
        parse_selection(args, &mut options)?;
    }
    let reference = decode_name(&args.astring()?, utf8)?;
    let mut patterns = Vec::new();
    if peek(args) == Some(b'(') {
        // mbox-or-pat = list-mailbox / patterns; patterns = "(" list-mailbox *(SP
        // list-mailbox) ")" (§6).
        options.extended = true;
        args.token()?;
        loop {
            match args.token()? {
                Some(Token::ListClose) if !patterns.is_empty() => break,
                Some(Token::Atom(atom)) => patterns.push(decode_name(atom, utf8)?),
                Some(Token::String(text)) => patterns.push(decode_name(&text, utf8)?),
                _ => return Err(ParseError::Unbalanced.into()),
            }
        }
    } else {
        patterns.push(decode_name(&args.astring()?, utf8)?);
    }
    if !args.at_end() {
        let word = args.atom()?;
        if !word.eq_ignore_ascii_case(b"RETURN") {
            return Err(ParseError::BadAtom.into());
        }
        options.extended = true;
        parse_return(args, &mut options)?;
    }
    args.finish()?;
    if options.select_subscribed {
        // §3.1: "SUBSCRIBED ... implies the SUBSCRIBED return option".
        options.return_subscribed = true;
    }
    Ok(ListCommand {
        reference,
        patterns,
        options,
    })
}

/// `list-select-opts = "(" [list-select-opt *(SP list-select-opt)] ")"`.
fn parse_selection(args: &mut Args<'_>, options: &mut ListOptions) -> Result<(), ListError> {
    args.token()?;
    loop {
        match args.token()? {
            Some(Token::ListClose) => break,
            Some(Token::Atom(atom)) => match atom.to_ascii_uppercase().as_slice() {
                b"SUBSCRIBED" => options.select_subscribed = true,
                b"SPECIAL-USE" => options.select_special_use = true,
                b"RECURSIVEMATCH" => options.recursive = true,
                // There are no remote mailboxes here; REMOTE only widens the set (§3.2).
                b"REMOTE" => {}
                _ => return Err(ListError::UnknownOption),
            },
            _ => return Err(ParseError::Unbalanced.into()),
        }
    }
    if options.recursive && !options.select_subscribed && !options.select_special_use {
        return Err(ListError::RecursiveAlone);
    }
    Ok(())
}

/// `list-return-opts = "RETURN" SP "(" [return-option *(SP return-option)] ")"`.
fn parse_return(args: &mut Args<'_>, options: &mut ListOptions) -> Result<(), ListError> {
    if args.token()? != Some(Token::ListOpen) {
        return Err(ParseError::ExpectedList.into());
    }
    loop {
        match args.token()? {
            Some(Token::ListClose) => break,
            Some(Token::Atom(atom)) => match atom.to_ascii_uppercase().as_slice() {
                b"SUBSCRIBED" => options.return_subscribed = true,
                // \HasChildren/\HasNoChildren (CHILDREN, RFC 3348) and the special-use
                // attributes are always returned, which both RFC 5258 §4 and RFC 6154 §2
                // allow; asking for them changes nothing.
                b"CHILDREN" | b"SPECIAL-USE" => {}
                b"STATUS" => {
                    // RFC 5819 §2: `STATUS (status-att ...)`; asking twice is an error.
                    if !options.status.is_empty() {
                        return Err(ParseError::BadAtom.into());
                    }
                    options.status = status_items(args)?;
                }
                _ => return Err(ListError::UnknownOption),
            },
            _ => return Err(ParseError::Unbalanced.into()),
        }
    }
    Ok(())
}

/// One mailbox name an extended LIST answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListEntry {
    pub info: MailboxInfo,
    /// CHILDINFO (RFC 5258 §3.5): the selection criteria some descendant meets, with
    /// RECURSIVEMATCH.
    pub childinfo: Vec<&'static str>,
}

/// `* LIST` order: INBOX and its children first, then by hierarchy levels (as
/// [`crate::store::UserMail::list`] orders).
fn order_key(name: &str) -> (bool, Vec<&str>) {
    let in_inbox = name == "INBOX" || name.starts_with("INBOX.");
    (!in_inbox, name.split(SEPARATOR).collect())
}

/// The full patterns: each pattern joined to the reference (RFC 3501 §6.3.8), empty patterns
/// left out (they ask for the delimiter only).
pub(crate) fn full_patterns(reference: &str, patterns: &[String]) -> Vec<String> {
    patterns
        .iter()
        .filter(|p| !p.is_empty())
        .map(|pattern| {
            if reference.is_empty() || reference.ends_with(SEPARATOR) {
                format!("{reference}{pattern}")
            } else {
                format!("{reference}{SEPARATOR}{pattern}")
            }
        })
        .collect()
}

/// Chooses what an extended LIST returns (RFC 5258 §3): the names matching any pattern (each
/// once) that meet the selection criteria (ANDed, §3), and with RECURSIVEMATCH also those with
/// a descendant meeting them, marked with CHILDINFO. Without selection criteria the names are
/// those of a plain LIST: mailboxes and the parents of mailboxes.
pub(crate) fn select(
    infos: Vec<MailboxInfo>,
    patterns: &[String],
    options: &ListOptions,
) -> Vec<ListEntry> {
    let mut infos = infos;
    if options.select_subscribed {
        // A subscribed name below a name that is neither a mailbox nor a mailbox's parent:
        // that name is still a candidate, for RECURSIVEMATCH (it exists nowhere).
        let known: HashSet<String> = infos.iter().map(|i| i.name.clone()).collect();
        let mut extra: HashMap<String, MailboxInfo> = HashMap::new();
        for info in infos.iter().filter(|i| i.subscribed) {
            for (at, _) in info.name.match_indices(SEPARATOR) {
                let parent = &info.name[..at];
                if !known.contains(parent) {
                    extra
                        .entry(parent.to_string())
                        .or_insert_with(|| MailboxInfo {
                            name: parent.to_string(),
                            special_use: None,
                            has_children: false,
                            subscribed: false,
                            exists: false,
                        });
                }
            }
        }
        if !extra.is_empty() {
            infos.extend(extra.into_values());
            infos.sort_by(|a, b| order_key(&a.name).cmp(&order_key(&b.name)));
        }
    }
    let base = options.select_subscribed || options.select_special_use;
    let meets = |info: &MailboxInfo| -> bool {
        if !base {
            return info.exists || info.has_children;
        }
        (!options.select_subscribed || info.subscribed)
            && (!options.select_special_use || (info.exists && info.special_use.is_some()))
    };
    // Names with a descendant that meets the criteria, for RECURSIVEMATCH: each meeting name
    // marks its ancestors (linear in the names times their depth).
    let mut above_meeting: HashSet<&str> = HashSet::new();
    if options.recursive {
        for info in infos.iter().filter(|i| meets(i)) {
            for (at, _) in info.name.match_indices(SEPARATOR) {
                above_meeting.insert(&info.name[..at]);
            }
        }
    }
    let mut childinfo: Vec<&'static str> = Vec::new();
    if options.select_subscribed {
        childinfo.push("SUBSCRIBED");
    }
    if options.select_special_use {
        childinfo.push("SPECIAL-USE");
    }
    let mut entries = Vec::new();
    for info in &infos {
        if !patterns.iter().any(|p| pattern_matches(p, &info.name)) {
            continue;
        }
        let itself = meets(info);
        let below = options.recursive && above_meeting.contains(info.name.as_str());
        if itself || below {
            entries.push(ListEntry {
                info: info.clone(),
                childinfo: if below { childinfo.clone() } else { Vec::new() },
            });
        }
    }
    entries
}

/// Writes one `* LIST` line of an extended LIST.
pub(crate) fn write_entry(entry: &ListEntry, options: &ListOptions, utf8: bool, out: &mut Vec<u8>) {
    let info = &entry.info;
    let mut attributes: Vec<&str> = Vec::new();
    if !info.exists {
        // §3: "\NonExistent" implies "\Noselect", and is what a name that is not a mailbox
        // gets in an extended LIST.
        attributes.push("\\NonExistent");
    }
    if options.return_subscribed && info.subscribed {
        attributes.push("\\Subscribed");
    }
    if info.has_children {
        attributes.push("\\HasChildren");
    } else if info.exists {
        attributes.push("\\HasNoChildren");
    }
    if info.exists
        && let Some(special) = info.special_use
    {
        attributes.push(special.attribute());
    }
    out.extend_from_slice(b"* LIST (");
    out.extend_from_slice(attributes.join(" ").as_bytes());
    out.extend_from_slice(b") \".\" ");
    write_mailbox_name(&info.name, utf8, out);
    if !entry.childinfo.is_empty() {
        // mbox-list-extended-item = "CHILDINFO" SP "(" tag *(SP tag) ")" (§6), tags quoted.
        out.extend_from_slice(b" (\"CHILDINFO\" (");
        for (i, tag) in entry.childinfo.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            out.push(b'"');
            out.extend_from_slice(tag.as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b"))");
    }
    out.extend_from_slice(b"\r\n");
}

/// Runs an extended LIST: the listing, and with LIST-STATUS the status of every selectable
/// mailbox returned, are read off the worker thread.
pub(crate) fn extended(
    session: &mut Session,
    command: ListCommand,
    tag: &[u8],
    ctx: &Context<'_>,
    out: &mut Vec<u8>,
) -> Outcome {
    let ListCommand {
        reference,
        patterns,
        options,
    } = command;
    let full = full_patterns(&reference, &patterns);
    if full.is_empty() {
        // Only empty patterns: the hierarchy delimiter and root (RFC 3501 §6.3.8).
        out.extend_from_slice(b"* LIST (\\Noselect) \".\" \"\"\r\n");
        response::tagged(out, tag, Status::Ok, "LIST completed");
        return Outcome::Done(Status::Ok);
    }
    if session.enabled.imap4rev2() && options.status.contains(&StatusItem::Recent) {
        // RFC 9051 §6.3.11: no RECENT status item in IMAP4rev2.
        return refuse(ListError::Syntax(ParseError::Rev2Removed), tag, out);
    }
    if options.status.contains(&StatusItem::HighestModseq) {
        // As for STATUS (HIGHESTMODSEQ), a CONDSTORE enabling command (RFC 7162 §3.1).
        session.enabled.enable_condstore();
    }
    let selected = session.selected_mailbox().map(str::to_string);
    with_mail(
        session,
        ctx,
        move |mail| {
            let entries = select(mail.list()?, &full, &options);
            // RFC 5819 §2: STATUS for each selectable mailbox listed; one that cannot be read
            // now (deleted meanwhile) gets none, which the RFC allows. The selected mailbox's
            // comes from the session's view, in the answer.
            let statuses: Vec<Option<StatusValues>> = entries
                .iter()
                .map(|entry| {
                    let wanted = !options.status.is_empty()
                        && entry.info.exists
                        && selected.as_deref() != Some(entry.info.name.as_str());
                    if !wanted {
                        return None;
                    }
                    mail.open(&entry.info.name)
                        .ok()
                        .map(|mailbox| StatusValues::of_index(&mailbox.snapshot()))
                })
                .collect();
            Ok((entries, statuses, options))
        },
        |session, (entries, statuses, options), tag, out| {
            let utf8 = session.utf8_names();
            for (entry, values) in entries.iter().zip(statuses) {
                write_entry(entry, &options, utf8, out);
                if options.status.is_empty() || !entry.info.exists {
                    continue;
                }
                let values = match session.selected.as_deref() {
                    Some(view) if view.mailbox.name() == entry.info.name => {
                        Some(StatusValues::of_view(view))
                    }
                    _ => values,
                };
                if let Some(values) = values {
                    write_status(&entry.info.name, &options.status, &values, utf8, out);
                }
            }
            response::tagged(out, tag, Status::Ok, "LIST completed");
            Status::Ok
        },
    )
}

/// Writes the answer to a LIST refused by [`parse`].
pub(crate) fn refuse(error: ListError, tag: &[u8], out: &mut Vec<u8>) -> Outcome {
    let text = match error {
        ListError::Syntax(e) => e.to_string(),
        ListError::RecursiveAlone => {
            "RECURSIVEMATCH needs another selection option (RFC 5258)".to_string()
        }
        ListError::UnknownOption => "Unknown LIST option".to_string(),
    };
    response::tagged(out, tag, Status::Bad, &text);
    Outcome::Done(Status::Bad)
}

#[cfg(test)]
mod tests {
    use super::super::super::parser::parse_command;
    use super::*;

    fn parse_list(line: &str) -> Result<ListCommand, ListError> {
        let command = parse_command(line.as_bytes()).expect("command");
        let mut args = command.args;
        parse(&mut args, false)
    }

    fn info(name: &str, exists: bool, subscribed: bool) -> MailboxInfo {
        MailboxInfo {
            name: name.to_string(),
            special_use: crate::store::SpecialUse::ALL
                .into_iter()
                .find(|s| s.folder_name() == name),
            has_children: false,
            subscribed,
            exists,
        }
    }

    fn names(entries: &[ListEntry]) -> Vec<(&str, Vec<&str>)> {
        entries
            .iter()
            .map(|e| (e.info.name.as_str(), e.childinfo.clone()))
            .collect()
    }

    #[test]
    fn plain_and_extended_forms() {
        let plain = parse_list("a LIST \"\" \"*\"\r\n").unwrap();
        assert!(!plain.options.extended);
        assert_eq!(plain.patterns, ["*"]);
        let ext = parse_list(
            "a LIST (subscribed RECURSIVEMATCH remote) \"\" (\"INBOX\" Sent* %) RETURN \
             (CHILDREN STATUS (MESSAGES UNSEEN SIZE) special-use)\r\n",
        )
        .unwrap();
        assert!(ext.options.extended && ext.options.select_subscribed && ext.options.recursive);
        assert!(
            ext.options.return_subscribed,
            "implied by the selection option"
        );
        assert_eq!(ext.patterns, ["INBOX", "Sent*", "%"]);
        assert_eq!(
            ext.options.status,
            [StatusItem::Messages, StatusItem::Unseen, StatusItem::Size]
        );
        let empty = parse_list("a LIST () \"\" \"*\" RETURN ()\r\n").unwrap();
        assert!(empty.options.extended);
        assert!(!empty.options.select_subscribed && empty.options.status.is_empty());
        let utf7 = parse_list("a LIST \"\" (\"&kAFP4W4IMH8-*\")\r\n").unwrap();
        assert_eq!(utf7.patterns, ["送信済み*"]);
    }

    #[test]
    fn refusals() {
        assert_eq!(
            parse_list("a LIST (RECURSIVEMATCH) \"\" \"*\"\r\n"),
            Err(ListError::RecursiveAlone)
        );
        assert_eq!(
            parse_list("a LIST (FOO) \"\" \"*\"\r\n"),
            Err(ListError::UnknownOption)
        );
        assert_eq!(
            parse_list("a LIST \"\" \"*\" RETURN (BAR)\r\n"),
            Err(ListError::UnknownOption)
        );
        for bad in [
            "a LIST \"\" () \r\n",
            "a LIST \"\" (\"a\"\r\n",
            "a LIST \"\" \"*\" RETURN\r\n",
            "a LIST \"\" \"*\" RETURN (STATUS ())\r\n",
            "a LIST \"\" \"*\" RETURN (STATUS (BOGUS))\r\n",
            "a LIST \"\" \"*\" RETURN (STATUS (MESSAGES) STATUS (UNSEEN))\r\n",
            "a LIST \"\" \"*\" EXTRA (x)\r\n",
            "a LIST (SUBSCRIBED \"\" \"*\"\r\n",
        ] {
            assert!(
                matches!(parse_list(bad), Err(ListError::Syntax(_))),
                "{bad:?} accepted"
            );
        }
    }

    fn tree() -> Vec<MailboxInfo> {
        let mut foo = info("Foo", false, false);
        foo.has_children = true;
        let mut inbox = info("INBOX", true, true);
        inbox.has_children = false;
        vec![
            inbox,
            info("Archive", true, false),
            foo,
            info("Foo.Bar", true, true),
            info("Gone", false, true),
            info("Sent", true, true),
        ]
    }

    #[test]
    fn several_patterns_list_each_name_once() {
        let opts = ListOptions {
            extended: true,
            ..ListOptions::default()
        };
        let got = select(tree(), &["INBOX".into(), "*".into(), "S*".into()], &opts);
        // "Gone" is only subscribed: not a mailbox, not listed without SUBSCRIBED.
        assert_eq!(
            names(&got),
            [
                ("INBOX", vec![]),
                ("Archive", vec![]),
                ("Foo", vec![]),
                ("Foo.Bar", vec![]),
                ("Sent", vec![])
            ]
        );
        let got = select(tree(), &["inbox".into(), "Sen%".into()], &opts);
        assert_eq!(names(&got), [("INBOX", vec![]), ("Sent", vec![])]);
    }

    #[test]
    fn subscribed_selection_and_recursivematch_childinfo() {
        let mut opts = ListOptions {
            extended: true,
            select_subscribed: true,
            return_subscribed: true,
            ..ListOptions::default()
        };
        let got = select(tree(), &["*".into()], &opts);
        assert_eq!(
            names(&got),
            [
                ("INBOX", vec![]),
                ("Foo.Bar", vec![]),
                ("Gone", vec![]),
                ("Sent", vec![])
            ]
        );
        // RFC 5258 §3.5: "%" does not reach Foo.Bar, but Foo is returned with CHILDINFO.
        let got = select(tree(), &["%".into()], &opts);
        assert_eq!(
            names(&got),
            [("INBOX", vec![]), ("Gone", vec![]), ("Sent", vec![])]
        );
        opts.recursive = true;
        let got = select(tree(), &["%".into()], &opts);
        assert_eq!(
            names(&got),
            [
                ("INBOX", vec![]),
                ("Foo", vec!["SUBSCRIBED"]),
                ("Gone", vec![]),
                ("Sent", vec![])
            ]
        );
        // A subscribed name under a name that exists nowhere: the parent still counts.
        let mut t = tree();
        t.push(info("Old.Stuff", false, true));
        let got = select(t, &["Old".into()], &opts);
        assert_eq!(names(&got), [("Old", vec!["SUBSCRIBED"])]);
        assert!(!got[0].info.exists);
    }

    #[test]
    fn special_use_selection() {
        let opts = ListOptions {
            extended: true,
            select_special_use: true,
            ..ListOptions::default()
        };
        let got = select(tree(), &["*".into()], &opts);
        assert_eq!(names(&got), [("Archive", vec![]), ("Sent", vec![])]);
    }

    #[test]
    fn entry_lines() {
        let opts = ListOptions {
            extended: true,
            return_subscribed: true,
            ..ListOptions::default()
        };
        let mut out = Vec::new();
        let mut foo = info("Foo", false, false);
        foo.has_children = true;
        write_entry(
            &ListEntry {
                info: foo,
                childinfo: vec!["SUBSCRIBED"],
            },
            &opts,
            false,
            &mut out,
        );
        write_entry(
            &ListEntry {
                info: info("Sent", true, true),
                childinfo: vec![],
            },
            &opts,
            false,
            &mut out,
        );
        write_entry(
            &ListEntry {
                info: info("Gone", false, true),
                childinfo: vec![],
            },
            &opts,
            false,
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "* LIST (\\NonExistent \\HasChildren) \".\" \"Foo\" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n\
             * LIST (\\Subscribed \\HasNoChildren \\Sent) \".\" \"Sent\"\r\n\
             * LIST (\\NonExistent \\Subscribed) \".\" \"Gone\"\r\n"
        );
    }
}
