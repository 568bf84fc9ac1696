//! The one error type of the stand-in node: a one-line message plus the
//! process exit code to use.
//!
//! Every command of the stand-in reports failure as a single line on stderr
//! and a non-zero exit code; [`Fail`] carries both up to `main`.

use std::fmt;

/// A failure of a stand-in command: what to print and how to exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    /// Process exit code (never 0).
    pub code: u8,
    /// Human-readable message, normally one line.
    pub message: String,
}

impl Fail {
    /// A failure that exits with code 1.
    pub fn new(message: impl Into<String>) -> Self {
        Self::with_code(1, message)
    }

    /// A failure with an explicit exit code (0 is turned into 1).
    pub fn with_code(code: u8, message: impl Into<String>) -> Self {
        Self {
            code: code.max(1),
            message: message.into(),
        }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fail {}

/// Result of a stand-in command: the exit code on success, or a [`Fail`].
pub type Outcome<T> = Result<T, Fail>;

/// Adds a one-line context to any displayable error, turning it into a [`Fail`].
pub trait Context<T> {
    /// Wraps the error as `"{context}: {error}"`.
    fn context(self, context: impl FnOnce() -> String) -> Outcome<T>;
}

impl<T, E: fmt::Display> Context<T> for Result<T, E> {
    fn context(self, context: impl FnOnce() -> String) -> Outcome<T> {
        self.map_err(|e| Fail::new(format!("{}: {e}", context())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_zero_is_never_used_for_a_failure() {
        assert_eq!(Fail::with_code(0, "x").code, 1);
        assert_eq!(Fail::with_code(3, "x").code, 3);
    }

    #[test]
    fn context_prefixes_the_underlying_error() {
        let r: Result<(), &str> = Err("boom");
        let f = r.context(|| "reading x".to_string()).unwrap_err();
        assert_eq!(f.message, "reading x: boom");
        assert_eq!(f.code, 1);
    }
}
