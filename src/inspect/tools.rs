//! The Debian tools that `appattach image create` runs, and those the tests of inspection
//! run to make their data, with the Debian package of each: one table, so that a missing
//! tool is named with the package to install wherever it is looked for. `.ci/install-test-tools`
//! installs the same packages (a test keeps the two equal).

use std::path::{Path, PathBuf};

/// Each tool and the Debian package that provides it.
pub const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("mkntfs", "ntfs-3g"),
    ("ntfsls", "ntfs-3g"),
    ("wimcapture", "wimtools"),
    ("wimapply", "wimtools"),
    ("sfdisk", "fdisk"),
    ("qemu-img", "qemu-utils"),
    ("osslsigncode", "osslsigncode"),
    ("openssl", "openssl"),
];

/// The tools `appattach image create` runs.
pub const IMAGE_CREATE: &[&str] = &["mkntfs", "wimcapture", "wimapply", "sfdisk", "qemu-img"];

/// Folders looked in besides `PATH`: the sbin folders a user's `PATH` often lacks, where
/// `mkntfs` and `sfdisk` live.
const SBIN: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// The Debian package that provides `tool`, when it is one of ours.
pub fn debian_package(tool: &str) -> Option<&'static str> {
    DEBIAN_PACKAGES
        .iter()
        .find(|(t, _)| *t == tool)
        .map(|(_, p)| *p)
}

/// What to do when `tool` is missing: `install the Debian package ntfs-3g (sudo apt-get
/// install ntfs-3g)`, on one line.
pub fn install_advice(tool: &str) -> String {
    match debian_package(tool) {
        Some(p) => format!("install the Debian package {p} (sudo apt-get install {p})"),
        None => "it is not on PATH".to_string(),
    }
}

/// Where `tool` is: on `PATH`, or in the sbin folders.
pub fn locate(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    locate_in(
        tool,
        std::env::split_paths(&path).chain(SBIN.iter().map(PathBuf::from)),
    )
}

/// Where `tool` is among `dirs`, the first that has it.
pub fn locate_in(tool: &str, dirs: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    dirs.into_iter()
        .map(|dir| dir.join(tool))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tool_is_named_with_its_package() {
        assert_eq!(
            install_advice("mkntfs"),
            "install the Debian package ntfs-3g (sudo apt-get install ntfs-3g)"
        );
        assert_eq!(debian_package("wimapply"), Some("wimtools"));
        assert_eq!(debian_package("sfdisk"), Some("fdisk"));
        assert_eq!(debian_package("qemu-img"), Some("qemu-utils"));
        assert_eq!(install_advice("no-such-tool"), "it is not on PATH");
        for tool in IMAGE_CREATE {
            assert!(debian_package(tool).is_some(), "{tool}");
        }
    }

    #[test]
    fn a_tool_is_found_only_where_it_is_and_runnable() {
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(locate_in("sh", [empty.path().to_path_buf()]), None);
        let dir = tempfile::tempdir().unwrap();
        let not_runnable = dir.path().join("mkntfs");
        std::fs::write(&not_runnable, "").unwrap();
        assert_eq!(locate_in("mkntfs", [dir.path().to_path_buf()]), None);
        assert!(locate_in("sh", [PathBuf::from("/bin"), PathBuf::from("/usr/bin")]).is_some());
    }
}
