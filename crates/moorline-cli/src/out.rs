//! Writing to stdout without panicking: `println!` panics when the write fails, and
//! `moorline demo | head -1` closes the pipe after one line.

use std::fmt::Display;
use std::io::{self, Write};

/// Why a line could not be written to stdout.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OutputError {
    /// The reader went away (`EPIPE`, e.g. `| head -1`): the command ends quietly with
    /// status 0, as Unix tools killed by `SIGPIPE` do in a pipeline.
    #[error("stdout was closed by its reader")]
    Closed,
    /// Any other write error (a full disk, `/dev/full`, ...): reported, status 1.
    #[error("cannot write to stdout: {0}")]
    Write(#[source] io::Error),
}

impl From<io::Error> for OutputError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe { OutputError::Closed } else { OutputError::Write(e) }
    }
}

/// Writes `text` and a newline to stdout and flushes it.
pub(crate) fn line(text: impl Display) -> Result<(), OutputError> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{text}")?;
    stdout.flush()?;
    Ok(())
}
