//! The `template` format: a user's minijinja template, rendered in a sandbox process.
//!
//! A template is code a user runs inside Herald. Fuel bounds its instructions and the
//! output writer stops it past the output cap, but one instruction can still allocate
//! without bound (`"x" * 100000000` in a loop, `s ~ s` doubling), and a failed allocation
//! aborts a Rust process. So templates never run in the server: a few long-lived
//! `herald __template-sandbox` child processes render them under an address-space limit
//! and a deadline. A template that exhausts its child kills only that child; the delivery
//! fails with the reason and a fresh child takes its place.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;

use crate::domain::names::Invalid;

/// Work a template may do per delivery (minijinja "fuel"): generous for real templates,
/// a stop for endless loops.
const FUEL: u64 = 100_000;
/// The largest body a template may produce.
pub const MAX_OUTPUT: usize = 256 * 1024;
/// The largest template accepted.
pub const MAX_SOURCE: usize = 64 * 1024;
/// Memory a sandbox process may map in all (its heap included).
pub const SANDBOX_MEMORY: u64 = 512 * 1024 * 1024;
/// The longest one render may take before its sandbox is killed.
pub const RENDER_DEADLINE: Duration = Duration::from_secs(5);
/// The argument that makes the `herald` binary a sandbox.
pub const SANDBOX_ARG: &str = "__template-sandbox";

/// A realistic push (with an actor and a tag) that every template is tried on when saved,
/// so unknown filters and includes are refused then, not at every delivery.
const SAMPLE_EVENT: &str = r#"{"id":"5f3b6c1e-4d2a-4b8e-9c7f-1a2b3c4d5e6f","timestamp":"2026-11-26T21:23:36.976557958Z","action":"push","target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":528,"digest":"sha256:7a6c8d1827831df4d97af55fb131c0c0f3146961996ce75cb482291fd1c81a31","length":528,"repository":"acme/web","url":"http://registry.example:5000/v2/acme/web/manifests/sha256:7a6c8d1827831df4d97af55fb131c0c0f3146961996ce75cb482291fd1c81a31","tag":"1.0","references":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":3370706,"digest":"sha256:1f5f0a4e7a4c3a7c2b5d2f1f0c7e0a2e4b7f5c1d2e3f4a5b6c7d8e9f0a1b2c3d"}]},"request":{"id":"8f0a2f2e-1c1d-4c3b-9a8e-7d6c5b4a3f2e","addr":"127.0.0.1:41234","host":"registry.example:5000","method":"PUT","useragent":"skopeo/1.9.3"},"actor":{"name":"alice"},"source":{"addr":"registry.example:5000","instanceID":"0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"}}"#;

#[derive(Serialize, Deserialize)]
struct Request {
    template: String,
    event: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Response {
    Ok(String),
    Err(String),
}

fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(FUEL));
    // Registry events differ in which fields they carry: a missing one renders as nothing
    // rather than failing the delivery.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    env
}

fn describe(e: &minijinja::Error) -> String {
    let line = e.line().map(|l| format!("line {l}: ")).unwrap_or_default();
    let mut text = format!("{line}{}", e.detail().unwrap_or(&e.kind().to_string()));
    if e.kind() == minijinja::ErrorKind::OutOfFuel {
        text = format!("{line}the template does too much work (more than {FUEL} steps)");
    }
    text
}

/// Compiles a template, to report mistakes with their line when it is saved. Cheap and
/// bounded (compiling runs none of the template), so it runs in the server.
pub fn compile(src: &str) -> Result<(), Invalid> {
    if src.len() > MAX_SOURCE {
        return Err(Invalid::new(
            "template",
            format!("a template has at most {MAX_SOURCE} bytes"),
        ));
    }
    let env = environment();
    env.template_from_str(src)
        .map(|_| ())
        .map_err(|e| Invalid::new("template", describe(&e)))
}

/// A writer that refuses to grow past the cap, which stops rendering at once.
#[derive(Default)]
struct Capped {
    out: Vec<u8>,
    overflowed: bool,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > MAX_OUTPUT {
            self.overflowed = true;
            return Err(std::io::Error::other("output cap"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Renders in this process, with fuel and the output cap but no memory bound: the sandbox
/// calls this, and so do unit tests with trusted templates. The server must use
/// [`TemplateSandbox::render`].
pub fn render_here(src: &str, event: &str) -> Result<String, String> {
    let v: Value =
        serde_json::from_str(event).map_err(|e| format!("the event is not JSON: {e}"))?;
    let env = environment();
    let template = env
        .template_from_str(src)
        .map_err(|e| format!("the template does not compile: {}", describe(&e)))?;
    let text = |pointer: &str| {
        v.pointer(pointer)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let repository = text("/target/repository").unwrap_or_default();
    // Herald's operational events carry `type` and `namespace` instead of an action and
    // a repository.
    let namespace = text("/namespace").unwrap_or_else(|| {
        repository
            .split_once('/')
            .map(|(n, _)| n.to_string())
            .unwrap_or_default()
    });
    let ctx = minijinja::context! {
        event => minijinja::Value::from_serialize(&v),
        action => text("/action").or_else(|| text("/type")),
        repository => repository,
        namespace => namespace,
        tag => text("/target/tag"),
        digest => text("/target/digest"),
        actor => text("/actor/name"),
    };
    let mut out = Capped::default();
    let rendered = template.render_captured_to(ctx, &mut out);
    if out.overflowed {
        return Err(format!(
            "the template failed: it produced more than {MAX_OUTPUT} bytes"
        ));
    }
    rendered.map_err(|e| format!("the template failed: {}", describe(&e)))?;
    String::from_utf8(out.out).map_err(|_| "the template produced invalid UTF-8".to_string())
}

/// The sandbox process: limits its own memory, then answers one JSON line per request on
/// stdin with one JSON line on stdout until stdin closes.
pub fn sandbox_main() -> std::process::ExitCode {
    let limit = libc::rlimit {
        rlim_cur: SANDBOX_MEMORY,
        rlim_max: SANDBOX_MEMORY,
    };
    // SAFETY: setrlimit reads the struct we pass and changes only this process's limits.
    if unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) } != 0 {
        eprintln!("herald template sandbox: cannot limit its memory");
        return std::process::ExitCode::FAILURE;
    }
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let answer = match serde_json::from_str::<Request>(&line) {
            Ok(r) => match render_here(&r.template, &r.event) {
                Ok(body) => Response::Ok(body),
                Err(e) => Response::Err(e),
            },
            Err(e) => Response::Err(format!("bad sandbox request: {e}")),
        };
        let Ok(mut text) = serde_json::to_string(&answer) else {
            break;
        };
        text.push('\n');
        if stdout.write_all(text.as_bytes()).is_err() || stdout.flush().is_err() {
            break;
        }
    }
    std::process::ExitCode::SUCCESS
}

struct Worker {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// The server's side: a few sandbox processes, started on demand and reused.
pub struct TemplateSandbox {
    exe: PathBuf,
    idle: Mutex<Vec<Worker>>,
    /// Renders for deliveries, one per core.
    permits: Semaphore,
    /// Trial renders of templates being saved, apart from the deliveries' places: a user
    /// saving slow templates over and over waits for their own trials, and cannot take the
    /// places every team's templated deliveries need.
    trials: Semaphore,
}

impl TemplateSandbox {
    /// `exe` is a `herald` binary (this one, unless a test names another). Starts one
    /// sandbox and renders the sample with it, so a broken setup fails at start.
    pub async fn start(exe: PathBuf) -> anyhow::Result<Self> {
        let sandbox = Self::unchecked(exe);
        sandbox
            .render("{{ action }}", SAMPLE_EVENT)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "the template sandbox ({} {SANDBOX_ARG}) does not work: {e}",
                    sandbox.exe.display()
                )
            })?;
        Ok(sandbox)
    }

    /// A sandbox that starts its first worker only when a template is rendered: for the
    /// command line, where most commands render none.
    pub fn unchecked(exe: PathBuf) -> Self {
        let size = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
        Self {
            exe,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size),
            trials: Semaphore::new(1),
        }
    }

    fn spawn(&self) -> Result<Worker, String> {
        let mut child = Command::new(&self.exe)
            .arg(SANDBOX_ARG)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the template sandbox: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the template sandbox has no pipes".into());
        };
        Ok(Worker {
            _child: child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    /// Renders `src` over `event`. A template that runs out of memory or time fails here
    /// with the reason; its sandbox is replaced.
    pub async fn render(&self, src: &str, event: &str) -> Result<String, String> {
        self.render_in(&self.permits, src, event).await
    }

    async fn render_in(
        &self,
        places: &Semaphore,
        src: &str,
        event: &str,
    ) -> Result<String, String> {
        let _permit = places
            .acquire()
            .await
            .map_err(|_| "the template sandbox is shut down".to_string())?;
        let idle = self.idle.lock().ok().and_then(|mut w| w.pop());
        let mut worker = match idle {
            Some(w) => w,
            None => self.spawn()?,
        };
        let mut line = serde_json::to_string(&Request {
            template: src.to_string(),
            event: event.to_string(),
        })
        .map_err(|e| e.to_string())?;
        line.push('\n');
        let exchange = async {
            worker.stdin.write_all(line.as_bytes()).await?;
            worker.stdin.flush().await?;
            let mut answer = String::new();
            worker.stdout.read_line(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        let answer = match tokio::time::timeout(RENDER_DEADLINE, exchange).await {
            Err(_) => {
                return Err(format!(
                    "the template took longer than {} s",
                    RENDER_DEADLINE.as_secs()
                ))
            }
            Ok(Err(e)) => return Err(format!("the template sandbox failed: {e}")),
            Ok(Ok(a)) => a,
        };
        let Ok(response) = serde_json::from_str::<Response>(&answer) else {
            // The child ended mid-render: its memory limit aborts it (or it crashed).
            return Err(format!(
                "the template sandbox stopped: the template used more than its {} MiB of \
                 memory, or the sandbox crashed",
                SANDBOX_MEMORY / (1024 * 1024)
            ));
        };
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(worker);
        }
        match response {
            Response::Ok(body) => Ok(body),
            Response::Err(e) => Err(e),
        }
    }

    /// What a template is checked with when saved: it compiles, and renders the sample
    /// event within every limit (so unknown filters, includes and bombs are refused then).
    pub async fn validate(&self, src: &str) -> Result<(), Invalid> {
        compile(src)?;
        self.render_in(&self.trials, src, SAMPLE_EVENT)
            .await
            .map(|_| ())
            .map_err(|e| {
                Invalid::new(
                    "template",
                    format!(
                        "{} (tried on a sample push event)",
                        e.trim_start_matches("the template failed: ")
                    ),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_the_event_and_its_fields() {
        let src = r#"{"repo": "{{ repository }}", "ns": "{{ namespace }}", "tag": "{{ tag }}", "by": "{{ event.request.useragent }}", "who": "{{ event.nosuch.deeper }}"}"#;
        assert!(compile(src).is_ok());
        assert_eq!(
            render_here(src, SAMPLE_EVENT).unwrap(),
            r#"{"repo": "acme/web", "ns": "acme", "tag": "1.0", "by": "skopeo/1.9.3", "who": ""}"#
        );
    }

    #[test]
    fn mistakes_name_their_line() {
        let err = compile("ok\n{{ tag }\nmore").unwrap_err();
        assert_eq!(err.field, "template");
        assert!(err.message.starts_with("line 2"), "{}", err.message);
        let err = render_here("a\n{{ event | tojson_nope }}", SAMPLE_EVENT).unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("unknown"), "{err}");
        assert!(render_here("{% include 'x' %}", SAMPLE_EVENT).is_err());
    }

    #[test]
    fn work_and_output_are_bounded() {
        let endless =
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
        let err = render_here(endless, SAMPLE_EVENT).unwrap_err();
        assert!(err.contains("too much work"), "{err}");
        // Stopped at the first write past the cap, not after building the whole string.
        let wide = r#"{% for i in range(3) %}{{ "x" * 1000000 }}{% endfor %}"#;
        let err = render_here(wide, SAMPLE_EVENT).unwrap_err();
        assert!(err.contains("more than 262144 bytes"), "{err}");
    }
}
