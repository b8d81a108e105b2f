//! `hato reg list|get|set`: the E-Post reg tree from the command line.

use std::process::ExitCode;

use clap::Subcommand;

use super::SpoolArg;
use crate::config::{Entry, RegTree, Source};

#[derive(Debug, Subcommand)]
pub(crate) enum RegCommand {
    /// Show every setting: value, where it comes from, unit and meaning; then any problem.
    List {
        #[command(flatten)]
        spool: SpoolArg,
    },
    /// Print one setting's value in force.
    Get {
        /// Setting name, with or without `.1` (e.g. IDLELoop or IDLELoop.1).
        name: String,
        #[command(flatten)]
        spool: SpoolArg,
    },
    /// Validate a value, then write it atomically.
    Set {
        name: String,
        value: String,
        #[command(flatten)]
        spool: SpoolArg,
    },
}

fn source_text(entry: &Entry) -> String {
    match (&entry.source, &entry.problem) {
        (Source::Default, _) => "default".to_string(),
        (Source::File(_), None) => "file".to_string(),
        (Source::File(_), Some(problem)) => format!("file INVALID ({problem}), default in force"),
    }
}

pub(crate) fn run(command: RegCommand) -> anyhow::Result<ExitCode> {
    match command {
        RegCommand::List { spool } => {
            let tree = RegTree::for_spool(&spool.path());
            let (entries, problems) = tree.list()?;
            println!("# {}", tree.root().display());
            for entry in &entries {
                println!(
                    "{:<18} {:<16} {:<10} {:<44} {}",
                    entry.def.file_name(),
                    entry.value,
                    entry.def.unit,
                    source_text(entry),
                    entry.def.meaning
                );
            }
            for problem in &problems {
                println!("problem: {problem}");
            }
            Ok(if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        RegCommand::Get { name, spool } => {
            let entry = RegTree::for_spool(&spool.path()).get(&name)?;
            if let Some(problem) = &entry.problem {
                eprintln!(
                    "hato: {}: {problem}; the default is in force",
                    entry.def.file_name()
                );
                println!("{}", entry.def.default);
                return Ok(ExitCode::from(2));
            }
            println!("{}", entry.value);
            Ok(ExitCode::SUCCESS)
        }
        RegCommand::Set { name, value, spool } => {
            let tree = RegTree::for_spool(&spool.path());
            tree.set(&name, &value)?;
            let entry = tree.get(&name)?;
            println!("{} = {}", entry.def.file_name(), entry.value);
            Ok(ExitCode::SUCCESS)
        }
    }
}
