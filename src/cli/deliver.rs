//! `hato deliver --user NAME [--from ADDR]`: delivers the message on standard input, for an MTA
//! (Postfix `mailbox_command`, an Exim pipe transport). The work is in [`crate::lmtp`]; this
//! maps its outcome to the `sysexits.h` status MTAs expect: 0 delivered, 67 unknown user, 75
//! try again later, 65 message too big, 73 mailbox full (over quota; `EX_CANTCREAT`, which
//! Postfix and Exim bounce, as LMTP's `552 5.2.2` is), 69 refused, 64 bad arguments.

use std::io::Read;
use std::process::ExitCode;

use clap::Args;

use super::SpoolArg;
use crate::lmtp::{DeliverError, LocalDelivery};

/// `EX_USAGE`.
const EXIT_USAGE: u8 = 64;

#[derive(Debug, Args)]
pub(crate) struct DeliverArgs {
    /// The user whose INBOX gets the message (a passwd-file user, or an address whose local
    /// part is one).
    #[arg(long, value_name = "NAME")]
    user: String,
    /// Envelope sender, for the Return-Path header (default: the null sender <>).
    #[arg(long, short = 'f', value_name = "ADDR", default_value = "")]
    from: String,
    #[command(flatten)]
    spool: SpoolArg,
}

pub(crate) fn run(args: DeliverArgs) -> anyhow::Result<ExitCode> {
    let bad = |c: char| c.is_whitespace() || c.is_control() || c == '<' || c == '>';
    if args.from.chars().any(bad) {
        eprintln!("hato deliver: invalid --from address {:?}", args.from);
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    if args.user.is_empty() || args.user.chars().any(bad) {
        eprintln!("hato deliver: invalid --user {:?}", args.user);
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let local = LocalDelivery::new(&args.spool.path());
    let max = local.max_size();
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin()
        .lock()
        .take(max.saturating_add(1))
        .read_to_end(&mut input)
    {
        return Ok(fail(&DeliverError::Temporary(format!(
            "reading standard input: {e}"
        ))));
    }
    if input.len() as u64 > max {
        return Ok(fail(&DeliverError::TooBig(format!(
            "more than MaxLiteralSize ({max} bytes)"
        ))));
    }
    match local.deliver(&args.user, &args.from, &input) {
        Ok(route) => {
            tracing::debug!(?route, "delivered");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(fail(&e)),
    }
}

fn fail(e: &DeliverError) -> ExitCode {
    eprintln!("hato deliver: {e}");
    ExitCode::from(e.exit_code())
}
