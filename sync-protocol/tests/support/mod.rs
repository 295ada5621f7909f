//! A feature document built with every writer, and the value it must read
//! back as (stated independently, field by field).

use std::collections::BTreeMap;

use automerge::Automerge;
use canopy_protocol::ChangeMeta;
use canopy_protocol::feature::{
    self, FeatureDoc, FeatureStatus, Importance, KeyFile, Learning, NewDecision, NewFeature,
    NewLearning, NewQueueEntry, NewSession, Participant, PullRequest, QueueEntry, QueueStatus,
    QueueUpdate, RepoRef, Sandbox, Session, SessionStatus, Usage, Writer,
};

pub(crate) const T0: i64 = 1_763_000_000_000;
pub(crate) const FEATURE: &str = "ftr_abcdefghijklmnopqrst";
pub(crate) const S1: &str = "ses_implementprovider234";
pub(crate) const S2: &str = "ses_writetests2345672abc";
pub(crate) const Q1: &str = "q_firstprompt2345678ab";
pub(crate) const Q2: &str = "q_secondprompt234567ab";
pub(crate) const Q3: &str = "q_thirdprompt2345678ab";
pub(crate) const L1: &str = "lrn_tokensexpire234567ab";
pub(crate) const D1: &str = "dec_usepkce23456789abcde";

/// Prose with characters whose width differs between UTF-8, UTF-16 and
/// code points, so that any index mix-up shows.
pub(crate) const NOTES: &str = "Café ☕ notes: 🚀 launch on Friday.\nSecond line — ünïcödé.";

fn edit(
    doc: &mut Automerge,
    message: &str,
    at: i64,
    f: impl FnOnce(
        &mut automerge::transaction::Transaction<'_>,
    ) -> Result<(), canopy_protocol::SchemaError>,
) {
    doc.transact_with(|_| ChangeMeta::at(message, at / 1000).commit_options(), f)
        .unwrap_or_else(|failure| panic!("{message}: {}", failure.error));
}

/// The sample document, built with the Rust writers, one change per edit.
pub(crate) fn sample_document() -> Automerge {
    let mut doc = feature::new_feature_document(&NewFeature {
        feature_id: FEATURE.into(),
        title: "Add OAuth login".into(),
        description: "Sign in with GitHub.".into(),
        repo: Some(RepoRef {
            url: "https://github.com/acme/app.git".into(),
            base_branch: "main".into(),
            feature_branch: None,
            full_clone: false,
        }),
        created_by: "alice".into(),
        created_by_name: "Alice".into(),
        created_at: T0,
    })
    .unwrap();
    edit(&mut doc, "rename", T0 + 1_000, |tx| {
        feature::set_title(tx, "Add OAuth login (GitHub) ✨")?;
        feature::set_description(tx, "Let users sign in with GitHub — PKCE flow.")
    });
    edit(&mut doc, "members", T0 + 2_000, |tx| {
        feature::set_participant(
            tx,
            "bob",
            &Participant {
                name: "Bob Ünal".into(),
                role: "contributor".into(),
            },
        )?;
        feature::set_participant(
            tx,
            "carol",
            &Participant {
                name: "Carol".into(),
                role: "viewer".into(),
            },
        )?;
        feature::remove_participant(tx, "carol")
    });
    edit(&mut doc, "repo", T0 + 3_000, |tx| {
        feature::set_repo(
            tx,
            Some(&RepoRef {
                url: "https://github.com/acme/app.git".into(),
                base_branch: "main".into(),
                feature_branch: Some("canopy/oauth".into()),
                full_clone: true,
            }),
        )
    });
    edit(&mut doc, "sessions", T0 + 4_000, |tx| {
        feature::add_session(
            tx,
            &NewSession {
                session_id: S1.into(),
                title: "Implement provider".into(),
                scope: "Only the GitHub provider; no UI.".into(),
                depends_on: vec![],
                created_by: "alice".into(),
                created_at: T0 + 4_000,
            },
        )?;
        feature::add_session(
            tx,
            &NewSession {
                session_id: S2.into(),
                title: "Write tests".into(),
                scope: String::new(),
                depends_on: vec![S1.into()],
                created_by: "bob".into(),
                created_at: T0 + 4_001,
            },
        )
        .map(drop)
    });
    edit(&mut doc, "session state", T0 + 5_000, |tx| {
        feature::set_session_status(tx, S1, &SessionStatus::Running)?;
        feature::set_session_sandbox(
            tx,
            S1,
            Some(&Sandbox {
                backend: "docker".into(),
                state: "running".into(),
                workspace_ready: true,
                branch: Some("canopy/oauth-provider".into()),
                head: Some("0123456789abcdef0123456789abcdef01234567".into()),
                detail: None,
            }),
        )?;
        feature::set_session_transcript(tx, S1, Some("automerge:2j9knpCseyhnK8izDmLpGP5WMdZQ"))?;
        feature::set_session_files_changed(
            tx,
            S1,
            &["src/auth/github.rs".into(), "src/auth/mod.rs".into()],
        )?;
        feature::set_session_pr(
            tx,
            S1,
            Some(&PullRequest {
                url: "https://github.com/acme/app/pull/42".into(),
                number: 42,
                state: "open".into(),
            }),
        )?;
        feature::set_session_usage(
            tx,
            S1,
            &Usage {
                input_tokens: 12_345,
                output_tokens: 678,
                cost_usd: 0.4375,
            },
        )
    });
    for (id, author, text, at) in [
        (Q1, "alice", "Implement the GitHub provider 🚀", T0 + 6_000),
        (Q2, "bob", "Then add refresh tokens.", T0 + 6_001),
        (Q3, "bob", "Also handle the error page.", T0 + 6_002),
    ] {
        edit(&mut doc, "queue prompt", at, |tx| {
            feature::append_queue_entry(
                tx,
                &NewQueueEntry {
                    id: id.into(),
                    session_id: S1.into(),
                    author: author.into(),
                    text: text.into(),
                    created_at: at,
                },
            )
        });
    }
    edit(&mut doc, "dispatch", T0 + 7_000, |tx| {
        feature::set_queue_status(
            tx,
            Q1,
            &QueueUpdate::new(QueueStatus::Dispatched, Writer::Server, T0 + 7_000),
        )?;
        feature::set_queue_status(
            tx,
            Q1,
            &QueueUpdate::new(QueueStatus::Running, Writer::Server, T0 + 7_500),
        )
    });
    edit(&mut doc, "finish", T0 + 8_000, |tx| {
        feature::set_queue_status(
            tx,
            Q1,
            &QueueUpdate::new(QueueStatus::Done, Writer::Server, T0 + 8_000)
                .with_commit("89abcdef"),
        )?;
        feature::set_queue_status(
            tx,
            Q3,
            &QueueUpdate::new(QueueStatus::Cancelled, Writer::Client, T0 + 8_001),
        )
    });
    edit(&mut doc, "learn", T0 + 9_000, |tx| {
        feature::add_learning(
            tx,
            &NewLearning {
                id: L1.into(),
                text: "GitHub tokens expire after 8 hours.".into(),
                author: "agent:ses_implementprovider234".into(),
                from_session: Some(S1.into()),
                importance: Importance::High,
                files: vec!["src/auth/github.rs".into()],
                created_at: T0 + 9_000,
            },
        )
    });
    edit(&mut doc, "decide", T0 + 10_000, |tx| {
        feature::add_decision(
            tx,
            &NewDecision {
                id: D1.into(),
                decision: "Use PKCE".into(),
                rationale: "No client secret in the browser.".into(),
                alternatives: vec!["Implicit flow".into(), "Device flow 📱".into()],
                author: "alice".into(),
                from_session: None,
                created_at: T0 + 10_000,
            },
        )
    });
    edit(&mut doc, "key files", T0 + 11_000, |tx| {
        feature::mark_key_file(tx, "src/auth/github.rs", Some("The provider."), Some(S1))?;
        feature::mark_key_file(tx, "src/auth/github.rs", None, Some(S1))?;
        feature::mark_key_file(tx, "src/auth/github.rs", None, Some(S2))?;
        feature::mark_key_file(tx, "docs/auth.md", Some("Tell users."), None)?;
        feature::mark_key_file(tx, "old.rs", None, None)?;
        feature::unmark_key_file(tx, "old.rs")
    });
    edit(&mut doc, "notes", T0 + 12_000, |tx| {
        feature::set_notes(tx, "Café notes: 🚀 launch on Friday.")?;
        // Code points: "Café " is 5.
        feature::splice_notes(tx, 5, 0, "☕ ")?;
        feature::splice_notes(tx, 33, 0, "\nSecond line — ünïcödé.")
    });
    doc
}

/// What [`sample_document`] must read back as.
pub(crate) fn sample_expected() -> FeatureDoc {
    let session1 = Session {
        title: "Implement provider".into(),
        scope: "Only the GitHub provider; no UI.".into(),
        status: SessionStatus::Running,
        depends_on: vec![],
        created_by: "alice".into(),
        created_at: T0 + 4_000,
        sandbox: Some(Sandbox {
            backend: "docker".into(),
            state: "running".into(),
            workspace_ready: true,
            branch: Some("canopy/oauth-provider".into()),
            head: Some("0123456789abcdef0123456789abcdef01234567".into()),
            detail: None,
        }),
        transcript: Some("automerge:2j9knpCseyhnK8izDmLpGP5WMdZQ".into()),
        files_changed: vec!["src/auth/github.rs".into(), "src/auth/mod.rs".into()],
        pr: Some(PullRequest {
            url: "https://github.com/acme/app/pull/42".into(),
            number: 42,
            state: "open".into(),
        }),
        usage: Usage {
            input_tokens: 12_345,
            output_tokens: 678,
            cost_usd: 0.4375,
        },
    };
    let session2 = Session {
        title: "Write tests".into(),
        scope: String::new(),
        status: SessionStatus::Pending,
        depends_on: vec![S1.into()],
        created_by: "bob".into(),
        created_at: T0 + 4_001,
        sandbox: None,
        transcript: None,
        files_changed: vec![],
        pr: None,
        usage: Usage::default(),
    };
    let entry = |id: &str, author: &str, text: &str, at: i64| QueueEntry {
        id: id.into(),
        session_id: S1.into(),
        author: author.into(),
        text: text.into(),
        created_at: at,
        status: QueueStatus::Queued,
        started_at: None,
        finished_at: None,
        error: None,
        commit: None,
    };
    FeatureDoc {
        schema: 1,
        feature_id: FEATURE.into(),
        title: "Add OAuth login (GitHub) ✨".into(),
        description: "Let users sign in with GitHub — PKCE flow.".into(),
        status: FeatureStatus::Active,
        repo: Some(RepoRef {
            url: "https://github.com/acme/app.git".into(),
            base_branch: "main".into(),
            feature_branch: Some("canopy/oauth".into()),
            full_clone: true,
        }),
        created_by: "alice".into(),
        created_at: T0,
        participants: BTreeMap::from([
            (
                "alice".into(),
                Participant {
                    name: "Alice".into(),
                    role: "owner".into(),
                },
            ),
            (
                "bob".into(),
                Participant {
                    name: "Bob Ünal".into(),
                    role: "contributor".into(),
                },
            ),
        ]),
        sessions: BTreeMap::from([(S1.into(), session1), (S2.into(), session2)]),
        queue: vec![
            QueueEntry {
                status: QueueStatus::Done,
                started_at: Some(T0 + 7_500),
                finished_at: Some(T0 + 8_000),
                commit: Some("89abcdef".into()),
                ..entry(Q1, "alice", "Implement the GitHub provider 🚀", T0 + 6_000)
            },
            entry(Q2, "bob", "Then add refresh tokens.", T0 + 6_001),
            QueueEntry {
                status: QueueStatus::Cancelled,
                finished_at: Some(T0 + 8_001),
                ..entry(Q3, "bob", "Also handle the error page.", T0 + 6_002)
            },
        ],
        learnings: vec![Learning {
            id: L1.into(),
            text: "GitHub tokens expire after 8 hours.".into(),
            author: "agent:ses_implementprovider234".into(),
            from_session: Some(S1.into()),
            importance: Importance::High,
            files: vec!["src/auth/github.rs".into()],
            created_at: T0 + 9_000,
        }],
        decisions: vec![feature::Decision {
            id: D1.into(),
            decision: "Use PKCE".into(),
            rationale: "No client secret in the browser.".into(),
            alternatives: vec!["Implicit flow".into(), "Device flow 📱".into()],
            author: "alice".into(),
            from_session: None,
            created_at: T0 + 10_000,
        }],
        key_files: BTreeMap::from([
            (
                "docs/auth.md".into(),
                KeyFile {
                    note: "Tell users.".into(),
                    sessions: vec![],
                },
            ),
            (
                "src/auth/github.rs".into(),
                KeyFile {
                    note: "The provider.".into(),
                    sessions: vec![S1.into(), S2.into()],
                },
            ),
        ]),
        notes: NOTES.into(),
    }
}
