//! Package and image inspection against real packages and images: packages zipped here
//! with real manifests and signed by `osslsigncode` with throwaway openssl certificates,
//! images built with Debian's NTFS, partitioning and qemu tools, and `appattach inspect`
//! and `appattach image create` run as a user runs them.

mod cli;
mod image;
mod import;
mod signature;
mod support;
mod tools;
mod verify;
