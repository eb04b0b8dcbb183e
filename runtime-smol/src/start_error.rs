//! Why the server could not start, and the exit code each cause gives the `livebridge`
//! binary — so a service manager (systemd's `RestartPreventExitStatus=`) or a launcher script
//! can tell a mistake in the settings, which no restart will mend, from a port that another
//! program holds for now.

use std::fmt;
use std::io;

/// What kind of problem stopped start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFailure {
    /// The settings contradict each other or name something that is not there (a catalogue
    /// file, a broker URL): fix the configuration.
    Config,
    /// The address cannot be listened on (in use, not this machine's, not permitted).
    Listen,
    /// The data dir cannot be used: not a directory, not writable, not a livebridge
    /// database, or in use by another livebridge.
    DataDir,
    /// Anything else (threads, signals): look at the message.
    Runtime,
}

impl StartFailure {
    /// The `livebridge` binary's exit code for this failure (docs/operations.md, "Exit
    /// codes"). 2 is also what the argument parser exits with on a bad flag.
    pub fn exit_code(self) -> u8 {
        match self {
            StartFailure::Runtime => 1,
            StartFailure::Config => 2,
            StartFailure::Listen => 3,
            StartFailure::DataDir => 4,
        }
    }
}

/// A start-up failure: its kind and a message naming what failed (the flag, the path, the
/// address).
#[derive(Debug)]
pub struct StartError {
    /// What kind of problem it is.
    pub failure: StartFailure,
    /// What to tell the operator.
    pub message: String,
}

impl StartError {
    /// A failure of `failure`'s kind with this message.
    pub fn new(failure: StartFailure, message: impl Into<String>) -> StartError {
        StartError {
            failure,
            message: message.into(),
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StartError {}

impl From<StartError> for io::Error {
    fn from(error: StartError) -> io::Error {
        io::Error::other(error.message)
    }
}
