//! Reading app attach packages and disk images on Linux: the package's identity, version,
//! applications and signing certificate, out of a `.msix`/`.appx` (or a bundle), or out of
//! a VHDX/VHD image that holds the expanded package. Packages and images are untrusted
//! input: every size and count read is bounded, and a bad input is an [`Error`] that says
//! what is wrong and where, never a panic.

pub mod disk;
pub mod image;
pub mod package;
pub mod signature;

use std::fmt;

/// What is wrong with a package or an image, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {what}")]
pub struct Error {
    /// Where: the file, the entry inside it, the structure and its offset.
    pub at: String,
    /// What is wrong, and what to do where there is something to do.
    pub what: String,
}

impl Error {
    /// An error at a place.
    pub fn new(at: impl fmt::Display, what: impl fmt::Display) -> Self {
        Self {
            at: at.to_string(),
            what: what.to_string(),
        }
    }

    /// The same error, said to be inside `outer` (a file, an image, a bundle).
    pub fn within(self, outer: impl fmt::Display) -> Self {
        Self {
            at: format!("{outer}: {}", self.at),
            what: self.what,
        }
    }
}

/// Result of reading untrusted input.
pub type Result<T> = std::result::Result<T, Error>;
