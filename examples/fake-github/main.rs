//! The integration tests' fake GitHub (`tests/integration/fake_github.rs`)
//! as a process, for the web client's browser tests: GitHub's OAuth web
//! flow, REST shapes and `git http-backend` on 127.0.0.1.
//!
//! ```text
//! fake-github --client-id ID --client-secret SECRET \
//!     --repo acme/widget --user bob-gh:102:Bob Builder:bob@example.com \
//!     --sign-in bob-gh
//! ```
//!
//! Prints one JSON line, `{"web_url", "api_url", "repos": {"owner/name":
//! clone URL}}`, then serves until its standard input closes or it is
//! signalled. Not part of Canopy: a test fixture that speaks GitHub's
//! protocols so the client can be driven through them end to end.

#![allow(clippy::print_stdout, clippy::print_stderr, unreachable_pub)]

#[path = "../../tests/integration/fake_github.rs"]
mod fake_github;

use std::collections::BTreeMap;
use std::io::Read as _;

use fake_github::FakeGitHub;

struct Args {
    client_id: String,
    client_secret: String,
    /// `owner/name`, `:anonymous` to let anyone read it.
    repos: Vec<String>,
    /// `login:id:name:email`.
    users: Vec<String>,
    sign_in: Option<String>,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "fake-github: {problem}\nusage: fake-github --client-id ID --client-secret SECRET [--repo OWNER/NAME[:anonymous]]… [--user LOGIN:ID:NAME:EMAIL]… [--sign-in LOGIN]"
    );
    std::process::exit(2)
}

fn parse() -> Args {
    let mut args = Args {
        client_id: String::new(),
        client_secret: String::new(),
        repos: Vec::new(),
        users: Vec::new(),
        sign_in: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--client-id" => args.client_id = value(),
            "--client-secret" => args.client_secret = value(),
            "--repo" => args.repos.push(value()),
            "--user" => args.users.push(value()),
            "--sign-in" => args.sign_in = Some(value()),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    if args.client_id.is_empty() || args.client_secret.is_empty() {
        usage("--client-id and --client-secret are required");
    }
    args
}

fn main() {
    let args = parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| usage(&format!("no runtime: {e}")));
    runtime.block_on(async move {
        let gh = FakeGitHub::start(1, &args.client_id, &args.client_secret).await;
        let mut repos = BTreeMap::new();
        for spec in &args.repos {
            let (full, anonymous) = match spec.strip_suffix(":anonymous") {
                Some(full) => (full, true),
                None => (spec.as_str(), false),
            };
            let Some((owner, name)) = full.split_once('/') else {
                usage(&format!("--repo {spec:?} is not OWNER/NAME"))
            };
            repos.insert(full.to_owned(), gh.create_repo(owner, name, false));
            if anonymous {
                gh.allow_anonymous(owner, name);
            }
        }
        for spec in &args.users {
            let parts: Vec<&str> = spec.splitn(4, ':').collect();
            let [login, id, name, email] = parts[..] else {
                usage(&format!("--user {spec:?} is not LOGIN:ID:NAME:EMAIL"))
            };
            let id = id
                .parse()
                .unwrap_or_else(|_| usage(&format!("--user {spec:?}: the id is not a number")));
            gh.add_user(login, id, name, email);
        }
        if let Some(login) = &args.sign_in {
            gh.sign_in_as(login);
        }
        println!(
            "{}",
            serde_json::json!({
                "web_url": gh.web_url(),
                "api_url": gh.api_url(),
                "repos": repos,
            })
        );
        // Until the parent closes our standard input (or kills us).
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await;
        drop(gh);
    });
}
