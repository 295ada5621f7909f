//! Building the sandbox image (`sandbox/Dockerfile`, embedded in the
//! binary) with the Docker daemon, and creating its Debian base image from
//! Debian packages (debootstrap) where no container registry can be reached.
//!
//! Both the build context and the base's root filesystem are streamed to
//! the daemon as tar archives written by a blocking task, a chunk at a time,
//! so neither the 185 MB OpenCode binary nor the 340 MB root filesystem is
//! held in memory.

use std::{
    collections::{HashMap, hash_map::Entry},
    fs,
    io::{self, Read, Write},
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use bollard::{
    Docker,
    errors::Error as DockerError,
    query_parameters::{BuildImageOptionsBuilder, BuilderVersion, CreateImageOptionsBuilder},
};
use futures::{Stream, StreamExt};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    sync::mpsc,
    task::JoinHandle,
};
use tokio_stream::wrappers::ReceiverStream;

/// The sandbox image's Dockerfile, compiled in so an installed `canopy`
/// builds the image without the source tree.
pub const DOCKERFILE: &str = include_str!("../../sandbox/Dockerfile");

/// This build's version, the image's `dev.canopy.version` label and tag.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Requests that upload hundreds of megabytes, or wait for a build step
/// (apt-get) before the daemon answers, outlast the client's default
/// two-minute timeout.
const LONG_REQUEST: Duration = Duration::from_secs(3600);

/// Tar chunks in flight to the daemon: bounded, so memory stays at about
/// `CHUNK * (CHUNKS_IN_FLIGHT + 1)` whatever the archive's size.
const CHUNK: usize = 1 << 20;
const CHUNKS_IN_FLIGHT: usize = 8;

/// Modification time of the build context's files (2024-01-01): fixed, so
/// identical inputs give identical archives.
const CONTEXT_MTIME: u64 = 1_704_067_200;

/// The Debian release a missing base image is made from when its tag does
/// not name one.
const DEFAULT_SUITE: &str = "bookworm";

/// The default image tag: `canopy-sandbox:<version>`.
pub fn default_tag() -> String {
    format!("canopy-sandbox:{VERSION}")
}

/// The sidecar binary's default place: `canopy-sidecar` next to the running
/// executable (as the server's local sandboxes find it).
pub fn default_sidecar_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("canopy-sidecar")))
        .unwrap_or_else(|| "canopy-sidecar".into())
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// The image's tag (`repo:tag`).
    pub tag: String,
    /// The sidecar binary (`canopy-sidecar`, built for Linux/glibc).
    pub sidecar_bin: PathBuf,
    /// The OpenCode binary; a symlink is followed.
    pub opencode_bin: PathBuf,
    /// The Dockerfile's text (normally [`DOCKERFILE`]).
    pub dockerfile: String,
}

impl BuildSpec {
    /// The embedded Dockerfile with these inputs.
    pub fn new(tag: impl Into<String>, sidecar_bin: PathBuf, opencode_bin: PathBuf) -> Self {
        Self {
            tag: tag.into(),
            sidecar_bin,
            opencode_bin,
            dockerfile: DOCKERFILE.to_owned(),
        }
    }

    /// Fail early, before Docker is asked anything, if an input file is not
    /// there.
    pub fn check_inputs(&self) -> Result<(), ImageError> {
        check_file("the OpenCode binary", &self.opencode_bin)?;
        check_file("the sandbox sidecar binary", &self.sidecar_bin)?;
        Ok(())
    }
}

fn check_file(what: &'static str, path: &Path) -> Result<(), ImageError> {
    let missing = |reason: String| ImageError::MissingInput {
        what,
        path: path.to_owned(),
        reason,
    };
    // `metadata` follows symlinks: a dangling one is missing too.
    match fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(missing("not a regular file".into())),
        Err(e) => Err(missing(e.to_string())),
    }
}

/// Image build errors.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No Docker daemon answers.
    #[error("cannot reach Docker: {0}")]
    Unavailable(String),
    /// The daemon refused a request.
    #[error("Docker failed to {what}: {message}")]
    Docker {
        /// What was asked.
        what: String,
        /// The daemon's message.
        message: String,
    },
    /// An input file of the build is not there.
    #[error("{what} is missing at {}: {reason}", path.display())]
    MissingInput {
        /// Which input.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// The Dockerfile names no base image.
    #[error("the Dockerfile has no FROM line")]
    NoBase,
    /// The base image is missing and debootstrap, which would create it,
    /// is not installed.
    #[error(
        "the base image {base} is not in Docker and no registry may be reachable; \
         creating it from Debian packages needs debootstrap, which is not installed: \
         run `apt-get install debootstrap` (or `docker pull {base}` where a registry is reachable)"
    )]
    DebootstrapMissing {
        /// The base image.
        base: String,
    },
    /// The base image is missing and creating it needs root.
    #[error(
        "the base image {base} is not in Docker; creating it from Debian packages \
         with debootstrap must run as root, and this runs as uid {uid}: run \
         `canopy sandbox build-image` as root once (or `docker pull {base}` where a \
         registry is reachable)"
    )]
    NotRoot {
        /// The base image.
        base: String,
        /// Our effective uid.
        uid: u32,
    },
    /// debootstrap failed.
    #[error("debootstrap failed to create the base image {base}: {message}")]
    Debootstrap {
        /// The base image.
        base: String,
        /// Its exit status and last output lines.
        message: String,
    },
    /// Importing the base's root filesystem into Docker failed.
    #[error("importing the base image {base} into Docker failed: {message}")]
    Import {
        /// The base image.
        base: String,
        /// What went wrong.
        message: String,
    },
    /// The daemon failed the build.
    #[error("building the image {tag} failed: {message}")]
    Build {
        /// The image tag.
        tag: String,
        /// The daemon's message.
        message: String,
    },
    /// Local files could not be read or written.
    #[error("{0}")]
    Io(String),
}

/// Connection-level failures mean the daemon is gone, not that it refused.
fn docker_error(what: &str, e: DockerError) -> ImageError {
    match e {
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => ImageError::Docker {
            what: what.to_owned(),
            message: format!("{} (HTTP {status_code})", message.trim()),
        },
        DockerError::DockerStreamError { error } => ImageError::Docker {
            what: what.to_owned(),
            message: error.trim().to_owned(),
        },
        e @ (DockerError::HyperLegacyError { .. }
        | DockerError::IOError { .. }
        | DockerError::SocketNotFoundError(_)
        | DockerError::RequestTimeoutError) => ImageError::Unavailable(e.to_string()),
        e => ImageError::Docker {
            what: what.to_owned(),
            message: e.to_string(),
        },
    }
}

// ---------------------------------------------------------------------------
// Dockerfile parsing

/// The image the Dockerfile's first `FROM` names (`FROM [--platform=…]
/// image [AS name]`), with `ARG` defaults declared before it substituted;
/// `None` without a `FROM`.
pub fn base_image(dockerfile: &str) -> Option<String> {
    let mut args: HashMap<String, String> = HashMap::new();
    for line in logical_lines(dockerfile) {
        let mut words = line.split_whitespace();
        let Some(instruction) = words.next() else {
            continue;
        };
        if instruction.eq_ignore_ascii_case("ARG") {
            for word in words {
                if let Some((name, value)) = word.split_once('=') {
                    let value = expand(&unquote(value), &args);
                    args.insert(name.to_owned(), value);
                }
            }
        } else if instruction.eq_ignore_ascii_case("FROM") {
            let image = words.find(|w| !w.starts_with("--"))?;
            let image = expand(&unquote(image), &args);
            return (!image.is_empty()).then_some(image);
        }
    }
    None
}

/// The Dockerfile's instructions, one per item: comment lines dropped,
/// continuation lines (ending in the escape character) joined.
fn logical_lines(dockerfile: &str) -> Vec<String> {
    let mut escape = '\\';
    let mut directives = true;
    let mut lines = Vec::new();
    let mut current = String::new();
    for raw in dockerfile.lines() {
        let trimmed = raw.trim();
        if let Some(comment) = trimmed.strip_prefix('#') {
            // Parser directives (`# escape=`` `) come before anything else.
            if directives
                && let Some((key, value)) = comment.split_once('=')
                && key.trim().eq_ignore_ascii_case("escape")
            {
                escape = value.trim().chars().next().unwrap_or('\\');
            }
            continue;
        }
        directives = false;
        if trimmed.is_empty() && current.is_empty() {
            continue;
        }
        match trimmed.strip_suffix(escape) {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.trim().is_empty() {
        lines.push(current);
    }
    lines
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner.to_owned();
        }
    }
    s.to_owned()
}

/// `$NAME`, `${NAME}` and `${NAME:-default}` from `args` (unknown: empty).
fn expand(s: &str, args: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(braced) = rest.strip_prefix('{') {
            let Some(end) = braced.find('}') else {
                out.push('$');
                continue;
            };
            let inner = &braced[..end];
            rest = &braced[end + 1..];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            match (args.get(name), default) {
                (Some(v), _) if !v.is_empty() || default.is_none() => out.push_str(v),
                (_, Some(d)) => out.push_str(d),
                _ => {}
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end == 0 {
                out.push('$');
                continue;
            }
            if let Some(v) = args.get(&rest[..end]) {
                out.push_str(v);
            }
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

/// `registry:5000/name:tag` → (`registry:5000/name`, `tag`); no tag:
/// `latest`.
fn split_repo_tag(image: &str) -> (&str, &str) {
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(i) => (&image[..name_start + i], &image[name_start + i + 1..]),
        None => (image, "latest"),
    }
}

/// The Debian release a base named `debian:<suite>[-slim]` is made from;
/// [`DEFAULT_SUITE`] for any other name.
fn debian_suite(base: &str) -> &str {
    let (repo, tag) = split_repo_tag(base);
    let repo = repo
        .trim_start_matches("docker.io/")
        .trim_start_matches("library/");
    let suite = tag.strip_suffix("-slim").unwrap_or(tag);
    if repo == "debian" && !suite.is_empty() && suite.chars().all(|c| c.is_ascii_lowercase()) {
        suite
    } else {
        DEFAULT_SUITE
    }
}

// ---------------------------------------------------------------------------
// Streaming tar archives

/// A `Write` that hands the bytes to an async reader in chunks, blocking
/// (in a blocking task) while the reader is `CHUNKS_IN_FLIGHT` behind.
struct ChunkWriter {
    tx: mpsc::Sender<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the Docker daemon stopped reading the archive",
            )
        })
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A tar archive written by `fill` on a blocking thread, as a stream of
/// chunks for a request body. A failure ends the stream with the error (so
/// the daemon never takes a truncated archive for a whole one) and is also
/// the task's result.
fn tar_stream<F>(
    fill: F,
) -> (
    impl Stream<Item = io::Result<Vec<u8>>> + Send + 'static,
    JoinHandle<io::Result<()>>,
)
where
    F: FnOnce(&mut tar::Builder<ChunkWriter>) -> io::Result<()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let task = tokio::task::spawn_blocking(move || {
        let writer = ChunkWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let mut builder = tar::Builder::new(writer);
        let result = fill(&mut builder)
            .and_then(|()| builder.into_inner())
            .and_then(|mut w| w.flush());
        if let Err(e) = &result {
            let _ = tx.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
        }
        result
    });
    (ReceiverStream::new(rx), task)
}

/// The build context: the Dockerfile and the two binaries (mode 0755, root,
/// a fixed mtime; the OpenCode symlink followed).
fn write_context<W: Write>(
    builder: &mut tar::Builder<W>,
    dockerfile: &str,
    opencode: &Path,
    sidecar: &Path,
) -> io::Result<()> {
    let mut header = context_header(dockerfile.len() as u64, 0o644);
    builder.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())?;
    for (name, path) in [("opencode", opencode), ("canopy-sidecar", sidecar)] {
        let file = fs::File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let len = file.metadata()?.len();
        let mut header = context_header(len, 0o755);
        let mut reader = ExactReader {
            inner: file.take(len),
            left: len,
            path,
        };
        builder.append_data(&mut header, name, &mut reader)?;
    }
    Ok(())
}

fn context_header(size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(CONTEXT_MTIME);
    header
}

/// Fails instead of writing a short entry (which would corrupt the archive)
/// when a file shrinks while it is read, e.g. a binary being rebuilt.
struct ExactReader<'a, R> {
    inner: R,
    left: u64,
    path: &'a Path,
}

impl<R: Read> Read for ExactReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} changed while it was read", self.path.display()),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A root filesystem as `tar -C root -c .` would archive it: symlinks kept
/// as symlinks (the rootfs has absolute ones), hard links as links, owners
/// and modes as they are. The contents of `dev`, `proc` and `sys` are left
/// out (Docker provides them at run time) and so are sockets.
fn write_rootfs<W: Write>(builder: &mut tar::Builder<W>, root: &Path) -> io::Result<()> {
    const EMPTY_DIRS: [&str; 3] = ["dev", "proc", "sys"];
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    let mut first_links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        let mut entries = fs::read_dir(root.join(&rel))?.collect::<io::Result<Vec<_>>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = rel.join(entry.file_name());
            let path = entry.path();
            let meta = fs::symlink_metadata(&path)?;
            let kind = meta.file_type();
            if kind.is_socket() {
                continue;
            }
            if kind.is_file() && meta.nlink() > 1 {
                match first_links.entry((meta.dev(), meta.ino())) {
                    Entry::Occupied(first) => {
                        let mut header = tar::Header::new_gnu();
                        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
                        header.set_entry_type(tar::EntryType::Link);
                        header.set_size(0);
                        builder.append_link(&mut header, &name, first.get())?;
                        continue;
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(name.clone());
                    }
                }
            }
            builder.append_path_with_name(&path, &name)?;
            if kind.is_dir()
                && !(rel.as_os_str().is_empty() && EMPTY_DIRS.iter().any(|d| name == Path::new(d)))
            {
                dirs.push(name);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The base image

/// Make sure `base` is in Docker. If it is not, create it from Debian
/// packages: debootstrap a minimal root filesystem (with git and
/// ca-certificates) in a temporary directory and import it under `base`'s
/// name. Returns whether it was created. Needs root and debootstrap only
/// when the image is missing.
pub async fn ensure_base(
    docker: &Docker,
    base: &str,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<bool, ImageError> {
    match docker.inspect_image(base).await {
        Ok(_) => return Ok(false),
        Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(e) => return Err(docker_error(&format!("inspect the image {base}"), e)),
    }
    if base.contains('@') {
        return Err(ImageError::Import {
            base: base.to_owned(),
            message: "an image pinned by digest cannot be made locally; pull it".into(),
        });
    }
    let Some(debootstrap) = find_debootstrap() else {
        return Err(ImageError::DebootstrapMissing {
            base: base.to_owned(),
        });
    };
    match effective_uid() {
        Some(0) | None => {}
        Some(uid) => {
            return Err(ImageError::NotRoot {
                base: base.to_owned(),
                uid,
            });
        }
    }
    let suite = debian_suite(base);
    log(&format!(
        "The base image {base} is not in Docker: creating it from Debian {suite} packages with debootstrap (about a minute)"
    ));
    let dir = TempDir::create().map_err(|e| ImageError::Io(format!("temporary directory: {e}")))?;
    let rootfs = dir.path.join("rootfs");
    run_debootstrap(&debootstrap, suite, &rootfs, base, log).await?;

    log(&format!("Importing the root filesystem as {base}"));
    let docker = docker.clone().with_timeout(LONG_REQUEST);
    let (repo, tag) = split_repo_tag(base);
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .message("created by canopy from Debian packages (debootstrap)")
        .changes(vec![r#"CMD ["bash"]"#.to_owned()])
        .build();
    let (chunks, writer) = tar_stream({
        let rootfs = rootfs.clone();
        move |builder| write_rootfs(builder, &rootfs)
    });
    let mut progress = docker.create_image(
        Some(options),
        Some(bollard::body_try_stream(
            chunks.map(|chunk| chunk.map(Into::into)),
        )),
        None,
    );
    let mut failure = None;
    while let Some(item) = progress.next().await {
        match item {
            Ok(info) => {
                if let Some(status) = info.status.as_deref().map(str::trim)
                    && !status.is_empty()
                {
                    log(status);
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    drop(progress);
    let written = writer
        .await
        .map_err(|e| ImageError::Io(format!("the archive writer failed: {e}")))?;
    match (failure, written) {
        (None, Ok(())) => {}
        // The archive's own failure explains a failed upload better than the
        // broken request it caused; a broken pipe is the daemon's doing.
        (_, Err(e)) if e.kind() != io::ErrorKind::BrokenPipe => {
            return Err(ImageError::Import {
                base: base.to_owned(),
                message: format!("cannot archive {}: {e}", rootfs.display()),
            });
        }
        (Some(e), _) => {
            return Err(match docker_error("import", e) {
                ImageError::Docker { message, .. } => ImageError::Import {
                    base: base.to_owned(),
                    message,
                },
                other => other,
            });
        }
        (None, Err(e)) => {
            return Err(ImageError::Import {
                base: base.to_owned(),
                message: e.to_string(),
            });
        }
    }
    docker
        .inspect_image(base)
        .await
        .map_err(|e| ImageError::Import {
            base: base.to_owned(),
            message: format!("the import finished but the image is not there: {e}"),
        })?;
    // Removing 340 MB of small files takes a moment: not on an async thread.
    let _ = tokio::task::spawn_blocking(move || drop(dir)).await;
    log(&format!("Created the base image {base}"));
    Ok(true)
}

/// `debootstrap`, on `PATH` or in the sbin directories a non-root `PATH`
/// often lacks.
fn find_debootstrap() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("debootstrap"))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// This process's effective uid (Linux: from `/proc/self/status`).
fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|uid| uid.parse().ok())
}

async fn run_debootstrap(
    bin: &Path,
    suite: &str,
    target: &Path,
    base: &str,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<(), ImageError> {
    let failed = |message: String| ImageError::Debootstrap {
        base: base.to_owned(),
        message,
    };
    let mut child = tokio::process::Command::new(bin)
        .args(["--variant=minbase", "--include=git,ca-certificates", suite])
        .arg(target)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("cannot start {}: {e}", bin.display())))?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(out, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(err, tx.clone()));
    }
    drop(tx);
    let mut tail: Vec<String> = Vec::new();
    while let Some(line) = rx.recv().await {
        log(&format!("debootstrap: {line}"));
        if tail.len() == 12 {
            tail.remove(0);
        }
        tail.push(line);
    }
    let status = child
        .wait()
        .await
        .map_err(|e| failed(format!("cannot wait for it: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(failed(format!(
            "{status}; its last output:\n{}",
            tail.join("\n")
        )))
    }
}

async fn forward_lines(pipe: impl AsyncRead + Unpin, tx: mpsc::UnboundedSender<String>) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim_end();
        if !line.is_empty() && tx.send(line.to_owned()).is_err() {
            break;
        }
    }
}

/// A temporary directory, removed on drop unless something is still
/// mounted inside it (debootstrap mounts /proc in its target while it runs;
/// deleting through a live mount would delete the host's files).
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn create() -> io::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("canopy-base-{}-{nanos:09}", std::process::id()));
        fs::create_dir(&path)?;
        Ok(Self { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let busy = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .any(|mount_point| Path::new(mount_point).starts_with(&self.path));
        if busy {
            tracing::warn!(path = %self.path.display(), "not removing the temporary root filesystem: something is mounted in it");
        } else if let Err(e) = fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the temporary root filesystem");
        }
    }
}

// ---------------------------------------------------------------------------
// The image

/// Build the sandbox image as `spec` says, tagged `spec.tag`, creating the
/// base image first if it is missing ([`ensure_base`]); returns the image
/// id. Progress lines go to `log`. Uses the classic builder, with the
/// daemon's layer cache: a rebuild with unchanged inputs takes seconds.
pub async fn build_image(
    docker: &Docker,
    spec: &BuildSpec,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<String, ImageError> {
    spec.check_inputs()?;
    let docker = docker.clone().with_timeout(LONG_REQUEST);
    match base_image(&spec.dockerfile) {
        None => return Err(ImageError::NoBase),
        Some(base) if base == "scratch" => {}
        Some(base) => {
            ensure_base(&docker, &base, &mut *log).await?;
        }
    }

    let labels = HashMap::from([("dev.canopy.version", VERSION)]);
    let options = BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .t(&spec.tag)
        .rm(true)
        .forcerm(true)
        // Only the optional apt-get step uses the network (the Debian
        // mirror); host networking needs no bridge set up on the daemon.
        .networkmode("host")
        .labels(&labels)
        .version(BuilderVersion::BuilderV1)
        .build();
    let (chunks, writer) = tar_stream({
        let dockerfile = spec.dockerfile.clone();
        let opencode = spec.opencode_bin.clone();
        let sidecar = spec.sidecar_bin.clone();
        move |builder| write_context(builder, &dockerfile, &opencode, &sidecar)
    });
    log(&format!("Building {}", spec.tag));
    let mut progress = docker.build_image(
        options,
        None,
        Some(bollard::body_try_stream(
            chunks.map(|chunk| chunk.map(Into::into)),
        )),
    );
    let mut failure = None;
    while let Some(item) = progress.next().await {
        match item {
            Ok(info) => {
                if let Some(text) = info.stream.as_deref() {
                    for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
                        log(line);
                    }
                }
                if let Some(status) = info.status.as_deref().map(str::trim)
                    && !status.is_empty()
                {
                    match info.id.as_deref() {
                        Some(id) => log(&format!("{id}: {status}")),
                        None => log(status),
                    }
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    drop(progress);
    let written = writer
        .await
        .map_err(|e| ImageError::Io(format!("the archive writer failed: {e}")))?;
    let build_failed = |message: String| ImageError::Build {
        tag: spec.tag.clone(),
        message,
    };
    if let Some(e) = failure {
        return Err(match (e, written) {
            (DockerError::DockerStreamError { error }, _) => build_failed(error.trim().to_owned()),
            (DockerError::DockerResponseServerError { message, .. }, _) => {
                build_failed(message.trim().to_owned())
            }
            (_, Err(e)) => build_failed(format!("cannot send the build context: {e}")),
            (e, Ok(())) => docker_error("build the image", e),
        });
    }
    written.map_err(|e| build_failed(format!("cannot send the build context: {e}")))?;
    let image = docker
        .inspect_image(&spec.tag)
        .await
        .map_err(|e| docker_error(&format!("inspect the built image {}", spec.tag), e))?;
    image
        .id
        .ok_or_else(|| build_failed("the daemon reports no image id".into()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base_of_the_embedded_dockerfile() {
        assert_eq!(
            base_image(DOCKERFILE).as_deref(),
            Some("debian:bookworm-slim")
        );
    }

    #[test]
    fn base_image_forms() {
        let cases = [
            ("FROM debian:bookworm-slim\n", Some("debian:bookworm-slim")),
            ("from alpine\n", Some("alpine")),
            (
                "# a comment\n\n  FROM  rust:1.95 AS build\nFROM debian\n",
                Some("rust:1.95"),
            ),
            (
                "FROM --platform=linux/amd64 registry:5000/x/y:1 as b\n",
                Some("registry:5000/x/y:1"),
            ),
            (
                "# syntax=docker/dockerfile:1\nFROM \\\n  debian:trixie\n",
                Some("debian:trixie"),
            ),
            (
                "ARG BASE=debian:bookworm\nFROM ${BASE}\n",
                Some("debian:bookworm"),
            ),
            ("ARG V=12\nFROM debian:$V-slim\n", Some("debian:12-slim")),
            ("FROM ${X:-busybox}\n", Some("busybox")),
            ("FROM \"quoted:1\"\n", Some("quoted:1")),
            ("FROM img@sha256:abc\n", Some("img@sha256:abc")),
            ("RUN echo FROM x\n", None),
            ("# FROM commented\n", None),
            ("", None),
            ("FROM\n", None),
        ];
        for (dockerfile, want) in cases {
            assert_eq!(base_image(dockerfile).as_deref(), want, "{dockerfile:?}");
        }
    }

    #[test]
    fn escape_directive() {
        let df = "# escape=`\nFROM `\n  debian:sid\n";
        assert_eq!(base_image(df).as_deref(), Some("debian:sid"));
    }

    #[test]
    fn repo_and_tag() {
        assert_eq!(
            split_repo_tag("debian:bookworm-slim"),
            ("debian", "bookworm-slim")
        );
        assert_eq!(split_repo_tag("debian"), ("debian", "latest"));
        assert_eq!(
            split_repo_tag("localhost:5000/a/b"),
            ("localhost:5000/a/b", "latest")
        );
        assert_eq!(
            split_repo_tag("localhost:5000/a/b:t"),
            ("localhost:5000/a/b", "t")
        );
    }

    #[test]
    fn suites() {
        assert_eq!(debian_suite("debian:bookworm-slim"), "bookworm");
        assert_eq!(debian_suite("docker.io/library/debian:trixie"), "trixie");
        assert_eq!(debian_suite("debian:12-slim"), DEFAULT_SUITE);
        assert_eq!(debian_suite("canopy-base-test:1"), DEFAULT_SUITE);
    }

    #[test]
    fn default_tag_has_the_version() {
        assert_eq!(
            default_tag(),
            format!("canopy-sandbox:{}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn context_archive() {
        let dir = std::env::temp_dir().join(format!("canopy-image-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let target = dir.join("real-opencode");
        fs::write(&target, b"opencode bytes").unwrap();
        let link = dir.join("opencode-link");
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let sidecar = dir.join("sidecar");
        fs::write(&sidecar, b"sidecar").unwrap();

        let mut builder = tar::Builder::new(Vec::new());
        write_context(&mut builder, "FROM scratch\n", &link, &sidecar).unwrap();
        let bytes = builder.into_inner().unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mode = entry.header().mode().unwrap();
            assert_eq!(entry.header().entry_type(), tar::EntryType::Regular);
            let mut body = String::new();
            entry.read_to_string(&mut body).unwrap();
            seen.push((name, mode, body));
        }
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            seen,
            [
                ("Dockerfile".to_owned(), 0o644, "FROM scratch\n".to_owned()),
                ("opencode".to_owned(), 0o755, "opencode bytes".to_owned()),
                ("canopy-sidecar".to_owned(), 0o755, "sidecar".to_owned()),
            ]
        );
    }

    #[test]
    fn missing_input_names_the_path() {
        let spec = BuildSpec::new(
            "t:1",
            PathBuf::from("/nonexistent/canopy-sidecar"),
            PathBuf::from("/nonexistent/opencode"),
        );
        let err = spec.check_inputs().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/opencode"), "{err}");
    }

    #[test]
    fn rootfs_archive_keeps_links_and_skips_dev() {
        let dir = std::env::temp_dir().join(format!("canopy-rootfs-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for d in ["bin", "dev", "etc"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        fs::write(dir.join("bin/a"), b"a").unwrap();
        fs::hard_link(dir.join("bin/a"), dir.join("bin/b")).unwrap();
        std::os::unix::fs::symlink("/bin/a", dir.join("etc/abs")).unwrap();
        fs::write(dir.join("dev/null-ish"), b"x").unwrap();

        let mut builder = tar::Builder::new(Vec::new());
        write_rootfs(&mut builder, &dir).unwrap();
        let bytes = builder.into_inner().unwrap();
        fs::remove_dir_all(&dir).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut entries: Vec<(String, tar::EntryType, Option<String>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().entry_type(),
                    e.link_name()
                        .unwrap()
                        .map(|l| l.to_string_lossy().into_owned()),
                )
            })
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            entries,
            [
                ("bin".into(), tar::EntryType::Directory, None),
                ("bin/a".into(), tar::EntryType::Regular, None),
                ("bin/b".into(), tar::EntryType::Link, Some("bin/a".into())),
                ("dev".into(), tar::EntryType::Directory, None),
                ("etc".into(), tar::EntryType::Directory, None),
                (
                    "etc/abs".into(),
                    tar::EntryType::Symlink,
                    Some("/bin/a".into())
                ),
            ]
        );
    }
}
