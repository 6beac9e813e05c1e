//! ARM's error shape: `{"error": {"code": "...", "message": "..."}}`.

use serde::{Deserialize, Serialize};

/// An error as ARM answers it: an HTTP status, a stable code and a message that says
/// what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ArmError {
    /// HTTP status.
    pub status: u16,
    /// ARM error code, e.g. `ResourceNotFound`, `InvalidParameter`.
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
}

/// The JSON body of an ARM error.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CloudError {
    /// The error.
    pub error: CloudErrorBody,
}

/// Code and message of an ARM error.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CloudErrorBody {
    /// ARM error code.
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

impl ArmError {
    /// An error with this status, code and message.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }
    /// 400 `InvalidParameter`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidParameter", message)
    }
    /// 400 `BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
    /// 404 `ResourceNotFound`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "ResourceNotFound", message)
    }
    /// 409 `Conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, "Conflict", message)
    }
    /// The JSON body ARM sends.
    pub fn body(&self) -> CloudError {
        CloudError {
            error: CloudErrorBody {
                code: self.code.clone(),
                message: self.message.clone(),
            },
        }
    }
}
