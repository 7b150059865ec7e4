//! The one error a stack file can produce: what went wrong, and where (file, line, column, key).

/// A stack file that cannot be applied, with the place that makes it so.
///
/// Displays as `stack.yaml:12:7: services.keystone.deploy.replicas: expected ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {path}: {message}")]
pub struct StackError {
    /// File name as given to [`super::parse_stack`].
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted key path, e.g. `services.keystone.deploy.replicas` (`<root>` for the document).
    pub path: String,
    /// Lower-case description of the problem.
    pub message: String,
}

/// A position in the stack file (1-based line and column).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Loc {
    pub line: usize,
    pub column: usize,
}

/// Builds [`StackError`]s for one file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub file: &'a str,
}

impl Ctx<'_> {
    pub fn error(&self, loc: Loc, path: &str, message: impl Into<String>) -> StackError {
        StackError {
            file: self.file.to_string(),
            line: loc.line,
            column: loc.column,
            path: if path.is_empty() {
                "<root>".to_string()
            } else {
                path.to_string()
            },
            message: message.into(),
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, StackError>;
