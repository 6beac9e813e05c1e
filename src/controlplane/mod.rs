//! A real, local Kubernetes control plane: etcd and kube-apiserver on loopback.
//!
//! Used by the integration tests (anything the API server decides is tested against a real
//! one) and by `appattach local`, the README's main job. The binaries are built from their
//! Go modules by `tests/controlplane/build.sh` and cached outside the clone.
//!
//! Every server runs under a small shell guard whose standard input is a pipe held by this
//! process. When the pipe closes (the [`ControlPlane`] is dropped, or this process ends in
//! any way, a panic or a kill included) the guard kills the server and removes its
//! directory. No process or temporary directory outlives its owner.

mod binaries;
mod pki;

pub use binaries::Binaries;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// How long the API server may take to report ready.
const READY_DEADLINE: Duration = Duration::from_secs(120);

/// The guard every server runs under. `$1` is the server's directory; the rest is the
/// command. The watcher reads the guard's stdin (fd 3); at end of file it marks the stop,
/// kills the server, and the guard removes the directory. A server that dies on its own
/// leaves its directory (and log) for the owner to read.
const GUARD: &str = r#"
set -u
dir=$1; shift
exec 3<&0
"$@" >>"$dir/server.log" 2>&1 </dev/null &
pid=$!
( read -r _ <&3; : >"$dir/.stopping"; kill -9 "$pid" 2>/dev/null ) &
watcher=$!
wait "$pid"
status=$?
if [ -e "$dir/.stopping" ]; then
  rm -rf "$dir"
  rmdir "$(dirname "$dir")" 2>/dev/null
  exit 0
fi
kill "$watcher" 2>/dev/null
exit "$status"
"#;

/// Errors of the local control plane, each naming the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A binary or tool is missing.
    #[error("{0}")]
    MissingTool(String),
    /// Building the control-plane binaries failed.
    #[error("building the control plane failed: {0}")]
    Build(String),
    /// A local file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Generating certificates failed.
    #[error("generating the control plane's certificates failed: {0}")]
    Pki(#[from] rcgen::Error),
    /// A server exited or did not become ready in time.
    #[error("{server} {problem}; last lines of its log:\n{log_tail}")]
    NotReady {
        /// Which server.
        server: &'static str,
        /// What went wrong.
        problem: String,
        /// The end of the server's log.
        log_tail: String,
    },
    /// A kubectl command failed.
    #[error("kubectl {args} failed ({status}): {stderr}")]
    Kubectl {
        /// The arguments given.
        args: String,
        /// How it exited.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Building a Kubernetes client failed.
    #[error("building a Kubernetes client for the local control plane failed: {0}")]
    Client(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// One server process under its guard.
struct Guarded {
    name: &'static str,
    dir: PathBuf,
    child: Child,
    /// Closing this stops the server.
    stdin: Option<ChildStdin>,
}

impl Guarded {
    fn spawn(
        name: &'static str,
        dir: PathBuf,
        program: &Path,
        args: &[String],
    ) -> Result<Self, Error> {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(GUARD)
            .arg("guard")
            .arg(&dir)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            // The shell's own job notices ("Killed") are noise; the server logs to a file.
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C in the terminal reaches only us, and we stop
            // the servers in order.
            .process_group(0)
            .spawn()
            .map_err(io_err(format!("starting {name} ({})", program.display())))?;
        let stdin = child.stdin.take();
        Ok(Self {
            name,
            dir,
            child,
            stdin,
        })
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.join("server.log")) {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Fails when the server has exited.
    fn check_alive(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(Error::NotReady {
                server: self.name,
                problem: format!("exited early ({status})"),
                log_tail: self.log_tail(),
            }),
            _ => Ok(()),
        }
    }

    fn stop(&mut self) {
        // Closing stdin is the stop signal; the guard kills the server and cleans up.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        // A server that died on its own left its directory for diagnosis; it goes now.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running etcd and kube-apiserver, reachable with an admin token.
pub struct ControlPlane {
    root: PathBuf,
    servers: Vec<Guarded>,
    server_url: String,
    kubeconfig: PathBuf,
    binaries: Binaries,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver on free loopback ports and waits until the API
    /// server reports ready. Fails, naming the server and quoting its log, when one exits
    /// or is not ready within two minutes.
    pub async fn start(binaries: &Binaries) -> Result<Self, Error> {
        let root = tempfile::Builder::new()
            .prefix("appattach-controlplane-")
            .tempdir()
            .map_err(io_err("creating the control plane's directory"))?
            .keep();
        let etcd_dir = root.join("etcd");
        let api_dir = root.join("apiserver");
        for d in [&etcd_dir, &api_dir] {
            std::fs::create_dir_all(d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        let mut cp = Self {
            root: root.clone(),
            servers: Vec::new(),
            server_url: String::new(),
            kubeconfig: api_dir.join("kubeconfig"),
            binaries: binaries.clone(),
        };

        let [etcd_client, etcd_peer, api_port] = free_ports()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        let etcd_args = vec![
            "--name=default".to_string(),
            format!("--data-dir={}", etcd_dir.join("data").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-cluster=default=http://127.0.0.1:{etcd_peer}"),
            "--unsafe-no-fsync=true".to_string(),
            "--log-level=warn".to_string(),
        ];
        cp.servers.push(Guarded::spawn(
            "etcd",
            etcd_dir,
            &binaries.etcd(),
            &etcd_args,
        )?);

        let pki = pki::Pki::generate()?;
        let token = pki::random_token();
        let write = |name: &str, contents: &str| -> Result<PathBuf, Error> {
            let path = api_dir.join(name);
            std::fs::write(&path, contents)
                .map_err(io_err(format!("writing {}", path.display())))?;
            Ok(path)
        };
        let ca = write("ca.crt", &pki.ca_pem)?;
        let cert = write("apiserver.crt", &pki.server_cert_pem)?;
        let key = write("apiserver.key", &pki.server_key_pem)?;
        let sa_key = write("service-account.key", &pki.service_account_key_pem)?;
        let sa_pub = write("service-account.pub", &pki.service_account_public_pem)?;
        let tokens = write(
            "tokens.csv",
            &format!("{token},admin,admin,\"system:masters\"\n"),
        )?;
        cp.server_url = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = kubeconfig_yaml(&cp.server_url, &pki.ca_pem, &token);
        write("kubeconfig", &kubeconfig)?;

        let api_args = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--secure-port={api_port}"),
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".to_string(),
            format!("--cert-dir={}", api_dir.display()),
            format!("--tls-cert-file={}", cert.display()),
            format!("--tls-private-key-file={}", key.display()),
            format!("--client-ca-file={}", ca.display()),
            format!("--token-auth-file={}", tokens.display()),
            "--authorization-mode=RBAC".to_string(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
            format!("--service-account-key-file={}", sa_pub.display()),
            format!("--service-account-signing-key-file={}", sa_key.display()),
            "--service-cluster-ip-range=10.96.0.0/16".to_string(),
            "--allow-privileged=true".to_string(),
            "--profiling=false".to_string(),
        ];
        cp.servers.push(Guarded::spawn(
            "kube-apiserver",
            api_dir,
            &binaries.kube_apiserver(),
            &api_args,
        )?);

        cp.wait_ready().await?;
        Ok(cp)
    }

    async fn wait_ready(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        let mut last = String::from("no answer yet");
        while started.elapsed() < READY_DEADLINE {
            for server in &mut self.servers {
                server.check_alive()?;
            }
            // kubectl rather than a kube::Client: an API server still starting answers 500,
            // which the client would log as an error on every poll.
            let out = tokio::process::Command::from(self.kubectl())
                .args(["get", "--raw=/readyz", "--request-timeout=5s"])
                .stdin(Stdio::null())
                .output()
                .await
                .map_err(io_err("running kubectl get --raw=/readyz"))?;
            if out.status.success() {
                return Ok(());
            }
            last = String::from_utf8_lossy(&out.stderr).trim().to_string();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let api = self.servers.last().expect("the API server was started");
        Err(Error::NotReady {
            server: "kube-apiserver",
            problem: format!(
                "was not ready within {}s (last /readyz answer: {last})",
                READY_DEADLINE.as_secs()
            ),
            log_tail: api.log_tail(),
        })
    }

    /// A new client with admin rights. Each tokio runtime needs its own client.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        let kubeconfig =
            Kubeconfig::read_from(&self.kubeconfig).map_err(|e| Error::Client(e.to_string()))?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Client(e.to_string()))?;
        kube::Client::try_from(config).map_err(|e| Error::Client(e.to_string()))
    }

    /// Path of a kubeconfig file with admin rights, for kubectl.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server's URL.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// A `kubectl` command already pointed at this control plane.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.binaries.kubectl());
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    /// Runs kubectl with these arguments (and `stdin` as its input, when given); returns
    /// its stdout, or an error quoting its stderr.
    pub fn kubectl_with_input(&self, args: &[&str], stdin: Option<&str>) -> Result<String, Error> {
        use std::io::Write;
        let mut child = self
            .kubectl()
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_err("running kubectl"))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .map_err(io_err("writing to kubectl"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(io_err("running kubectl"))?;
        if !out.status.success() {
            return Err(Error::Kubectl {
                args: args.join(" "),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs kubectl with these arguments; returns its stdout, or an error quoting its stderr.
    pub fn kubectl_output(&self, args: &[&str]) -> Result<String, Error> {
        self.kubectl_with_input(args, None)
    }

    /// Applies CRDs (YAML) server-side and waits until every one is Established.
    pub fn install_crds(&self, yaml: &str) -> Result<(), Error> {
        let applied = self.kubectl_with_input(
            &["apply", "--server-side", "-o", "name", "-f", "-"],
            Some(yaml),
        )?;
        let mut args = vec!["wait", "--for=condition=Established", "--timeout=60s"];
        args.extend(applied.lines().map(str::trim).filter(|l| !l.is_empty()));
        self.kubectl_output(&args)?;
        Ok(())
    }

    /// The binaries this control plane runs.
    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // The API server first, so it does not log etcd's disappearance.
        for server in self.servers.iter_mut().rev() {
            server.stop();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Distinct free TCP ports on loopback.
fn free_ports<const N: usize>() -> Result<[u16; N], Error> {
    // Hold every listener until all are chosen, so the ports are distinct.
    let listeners = (0..N)
        .map(|_| {
            TcpListener::bind("127.0.0.1:0").map_err(io_err("finding a free port on 127.0.0.1"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut ports = [0u16; N];
    for (port, l) in ports.iter_mut().zip(&listeners) {
        *port = l
            .local_addr()
            .map_err(io_err("reading a free port"))?
            .port();
    }
    Ok(ports)
}

fn kubeconfig_yaml(server: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: appattach-local
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: appattach-local
  context:
    cluster: appattach-local
    user: admin
current-context: appattach-local
"
    )
}
