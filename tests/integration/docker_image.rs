//! `canopy sandbox build-image` against the real Docker daemon: the image it
//! builds has the unprivileged user, the sidecar as entrypoint, a working
//! OpenCode and git, and the /sandbox layout a fresh named volume inherits.
//! Test containers get no network (`--network none`).
//!
//! Without a Docker daemon these tests print a loud note and pass, unless
//! `CANOPY_REQUIRE_DOCKER=1`, which makes a missing daemon a failure.

use std::{
    process::{Command, Output},
    time::Instant,
};

use serde_json::Value;

use crate::common::*;

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().unwrap()
}

/// `docker …`, which must succeed; its stdout.
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `canopy sandbox build-image …`: (success, stdout, stderr).
fn build_image(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_canopy"))
        .args(["sandbox", "build-image"])
        .args(args)
        .current_dir(repo_root())
        .env("CANOPY_LOG", "warn")
        // The test's docker CLI and the build talk to the same daemon.
        .env_remove("CANOPY_DOCKER_HOST")
        .env_remove("CANOPY_SANDBOX_IMAGE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Removes the test's image tag and volume, also when an assertion fails.
struct Cleanup {
    tag: String,
    volume: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = docker(&["volume", "rm", "-f", &self.volume]);
        let _ = docker(&["image", "rm", &self.tag]);
    }
}

/// The OpenCode version `sandbox/opencode/package.json` pins.
fn pinned_opencode_version() -> String {
    let package: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("sandbox/opencode/package.json")).unwrap(),
    )
    .unwrap();
    package["dependencies"]["opencode-ai"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn builds_the_sandbox_image() {
    if !docker_or_skip("builds_the_sandbox_image") {
        return;
    }
    let pid = std::process::id();
    let tag = format!("canopy-sandbox-test:{pid}");
    let tag = tag.as_str();
    let cleanup = Cleanup {
        tag: tag.to_owned(),
        volume: format!("canopy-sandbox-test-{pid}"),
    };
    let opencode = opencode_bin();
    let sidecar = sidecar_bin();
    let args = [
        "--tag",
        tag,
        "--opencode-bin",
        opencode.to_str().unwrap(),
        "--sidecar-bin",
        sidecar.to_str().unwrap(),
    ];

    let started = Instant::now();
    let (ok, out, err) = build_image(&args);
    assert!(ok, "build-image failed:\n{err}");
    println!("first build: {:.1?}", started.elapsed());
    let id = out
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no image id in {out:?}"))
        .to_owned();
    assert!(out.starts_with(tag), "{out}");

    // Unchanged inputs: the layer cache gives the same image.
    let started = Instant::now();
    let (ok, again, err) = build_image(&args);
    assert!(ok, "rebuild failed:\n{err}");
    println!("rebuild: {:.1?}", started.elapsed());
    assert!(
        again.contains(&id),
        "a rebuild changed the image: {out} vs {again}"
    );

    let inspect: Value = serde_json::from_str(&docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .}}",
        tag,
    ]))
    .unwrap();
    assert_eq!(inspect["Id"], id.as_str());
    let config = &inspect["Config"];
    assert_eq!(config["User"], "canopy");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/canopy-sidecar"])
    );
    assert_eq!(config["WorkingDir"], "/sandbox/workspace");
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in [
        "HOME=/sandbox/home",
        "CANOPY_WORKSPACE=/sandbox/workspace",
        "CANOPY_STATE_DIR=/sandbox/state",
        "CANOPY_OPENCODE_BIN=/usr/local/bin/opencode",
    ] {
        assert!(env.contains(&want), "{want} not in {env:?}");
    }
    assert_eq!(config["Labels"]["dev.canopy.role"], "sandbox-image");
    assert_eq!(
        config["Labels"]["dev.canopy.version"],
        env!("CARGO_PKG_VERSION")
    );

    // Run as production does: read-only root, tmpfs /tmp, and a fresh named
    // volume at /sandbox, which Docker fills from the image on first mount.
    let volume = format!("{}:/sandbox", cleanup.volume);
    let run = |entrypoint: &str, args: &[&str]| -> String {
        let mut all = vec![
            "run",
            "--rm",
            "--network",
            "none",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "-v",
            &volume,
            "--entrypoint",
            entrypoint,
            tag,
        ];
        all.extend_from_slice(args);
        docker_ok(&all)
    };
    let version = run("/usr/local/bin/opencode", &["--version"]);
    assert!(
        version.contains(&pinned_opencode_version()),
        "opencode --version printed {version:?}"
    );
    assert_eq!(run("id", &["-u"]), "10001");
    assert_eq!(run("id", &["-g"]), "10001");
    let git = run("git", &["--version"]);
    assert!(git.starts_with("git version"), "{git}");
    // The volume has the image's layout and ownership, and the agent can
    // write its workspace, state and home.
    let owners = run(
        "sh",
        &[
            "-c",
            "touch /sandbox/workspace/w /sandbox/state/s /sandbox/home/.config/c && \
             stat -c '%n %U %a' /sandbox /sandbox/workspace /sandbox/state /sandbox/home",
        ],
    );
    assert_eq!(
        owners,
        "/sandbox canopy 755\n/sandbox/workspace canopy 755\n\
         /sandbox/state canopy 755\n/sandbox/home canopy 755"
    );
    // The binaries belong to root: the agent cannot replace them.
    let binaries = run(
        "stat",
        &[
            "-c",
            "%n %U %a",
            "/usr/local/bin/opencode",
            "/usr/local/bin/canopy-sidecar",
        ],
    );
    assert_eq!(
        binaries,
        "/usr/local/bin/opencode root 755\n/usr/local/bin/canopy-sidecar root 755"
    );
    drop(cleanup);
    assert!(
        !docker(&["image", "inspect", tag]).status.success(),
        "the test tag was not removed"
    );
}

#[test]
fn build_image_names_a_missing_input() {
    // Checked before Docker is asked anything: no daemon needed.
    let missing = "/nonexistent/canopy-test/opencode";
    let (ok, _, err) = build_image(&[
        "--tag",
        "canopy-sandbox-test:missing",
        "--opencode-bin",
        missing,
        "--sidecar-bin",
        sidecar_bin().to_str().unwrap(),
    ]);
    assert!(!ok, "build-image succeeded without OpenCode");
    assert!(err.contains(missing), "{err}");
}
