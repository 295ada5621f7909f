//! `canopy user …` and `canopy token …` against a real data directory:
//! good input works, bad input gets a clear error and a failing exit code,
//! and what the CLI does takes effect on the server.

use std::path::Path;

use crate::common::*;

fn canopy(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_canopy"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("CANOPY_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn token_in(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.starts_with("canopy_"))
        .unwrap_or_else(|| panic!("no token in {text:?}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_tokens_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    // No database yet.
    let (ok, _, err) = canopy(dir.path(), &["user", "list"]);
    assert!(!ok);
    assert!(err.contains("no Canopy database"), "{err}");

    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();

    let (ok, out, err) = canopy(
        dir.path(),
        &[
            "user",
            "add",
            "carol",
            "--name",
            "Carol C",
            "--email",
            "carol@example.com",
        ],
    );
    assert!(ok, "{err}");
    let first = token_in(&out);
    let me: serde_json::Value = http_as(&first)
        .get(format!("{base}/api/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["handle"], "carol");
    assert_eq!(me["display_name"], "Carol C");
    assert_eq!(me["email"], "carol@example.com");

    // Bad input: each a clear error, nothing created.
    for (args, expect) in [
        (vec!["user", "add", "carol"], "already exists"),
        (vec!["user", "add", "Bad Handle"], "handle"),
        (vec!["user", "add", "-leading"], "unexpected argument"),
        (vec!["user", "add", &"x".repeat(40)], "handle"),
        (
            vec!["user", "add", "erin", "--email", "not an email"],
            "email",
        ),
        (vec!["user", "disable", "nobody"], "no user"),
        (vec!["token", "create", "--user", "nobody"], "no user"),
        (vec!["token", "revoke", "tok_nope"], "no active token"),
    ] {
        let (ok, _, err) = canopy(dir.path(), &args);
        assert!(!ok, "{args:?} succeeded");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    let (_, list, _) = canopy(dir.path(), &["user", "list"]);
    assert_eq!(list.lines().count(), 3, "{list}"); // header, admin, carol

    // A second token; list; revoke the first while the server runs.
    let (ok, out, err) = canopy(
        dir.path(),
        &["token", "create", "--user", "carol", "--label", "laptop"],
    );
    assert!(ok, "{err}");
    let second = token_in(&out);
    let (_, list, _) = canopy(dir.path(), &["token", "list", "--user", "carol"]);
    let ids: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split('\t').next())
        .filter(|id| id.starts_with("tok_"))
        .collect();
    assert_eq!(ids.len(), 2, "{list}");
    assert!(
        !list.contains(&second) && !list.contains(&first),
        "a secret was listed"
    );
    let first_id = list
        .lines()
        .find(|l| l.contains("created with the user"))
        .and_then(|l| l.split('\t').next())
        .unwrap()
        .to_owned();
    let (ok, _, err) = canopy(dir.path(), &["token", "revoke", &first_id]);
    assert!(ok, "{err}");
    let (ok, _, _) = canopy(dir.path(), &["token", "revoke", &first_id]);
    assert!(!ok, "revoked twice");
    let status = |t: String| {
        let base = base.clone();
        async move {
            http_as(&t)
                .get(format!("{base}/api/me"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(first.clone()).await, 401);
    assert_eq!(status(second.clone()).await, 200);

    // Disable and enable.
    let (ok, _, err) = canopy(dir.path(), &["user", "disable", "carol"]);
    assert!(ok, "{err}");
    assert_eq!(status(second.clone()).await, 401);
    let (ok, _, err) = canopy(dir.path(), &["user", "enable", "carol"]);
    assert!(ok, "{err}");
    assert_eq!(status(second.clone()).await, 200);
    server.stop().await.unwrap();
}
