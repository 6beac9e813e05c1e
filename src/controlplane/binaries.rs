//! Where the control-plane binaries come from.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::Error;

/// The build script, found in the source tree this binary was built from.
const BUILD_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/controlplane/build.sh");

/// A directory holding `etcd`, `kube-apiserver` and `kubectl`.
#[derive(Clone, Debug)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// The directory named by `APPATTACH_CONTROLPLANE_BIN`, or else the one the build script
    /// produces (building the binaries on first use, printing its progress, reusing its
    /// cache afterwards).
    pub fn locate() -> Result<Self, Error> {
        match std::env::var_os("APPATTACH_CONTROLPLANE_BIN") {
            Some(dir) if !dir.is_empty() => Self::from_dir(PathBuf::from(dir)),
            _ => Self::build(),
        }
    }

    /// A directory that already holds the three binaries.
    pub fn from_dir(dir: PathBuf) -> Result<Self, Error> {
        let bins = Self { dir };
        bins.check()?;
        Ok(bins)
    }

    /// Runs the build script, which prints the binaries' directory on its last line.
    pub fn build() -> Result<Self, Error> {
        if !Path::new(BUILD_SCRIPT).exists() {
            return Err(Error::MissingTool(format!(
                "the control-plane build script {BUILD_SCRIPT} is missing; set \
                 APPATTACH_CONTROLPLANE_BIN to a directory holding etcd, kube-apiserver and kubectl"
            )));
        }
        let out = Command::new("bash")
            .arg(BUILD_SCRIPT)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| Error::Build(format!("running bash {BUILD_SCRIPT}: {e}")))?;
        if !out.status.success() {
            return Err(Error::Build(format!(
                "bash {BUILD_SCRIPT} exited with {} (its output above names the failing step)",
                out.status
            )));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let dir = stdout.lines().last().unwrap_or_default().trim();
        if dir.is_empty() {
            return Err(Error::Build(format!(
                "bash {BUILD_SCRIPT} printed no directory"
            )));
        }
        Self::from_dir(PathBuf::from(dir))
    }

    fn check(&self) -> Result<(), Error> {
        for bin in [self.etcd(), self.kube_apiserver(), self.kubectl()] {
            if !bin.is_file() {
                return Err(Error::MissingTool(format!(
                    "{} is missing; run bash {BUILD_SCRIPT} or point APPATTACH_CONTROLPLANE_BIN \
                     at a directory holding etcd, kube-apiserver and kubectl",
                    bin.display()
                )));
            }
        }
        Ok(())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Path of `etcd`.
    pub fn etcd(&self) -> PathBuf {
        self.dir.join("etcd")
    }
    /// Path of `kube-apiserver`.
    pub fn kube_apiserver(&self) -> PathBuf {
        self.dir.join("kube-apiserver")
    }
    /// Path of `kubectl`.
    pub fn kubectl(&self) -> PathBuf {
        self.dir.join("kubectl")
    }
}
