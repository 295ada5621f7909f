//! The system text each prompt carries: what the feature is, what the team
//! and its agents have learned and decided, which files matter, what the
//! sibling sessions are doing, and who is asking. Bounded, newest first,
//! so a long-lived feature does not crowd out the prompt.

use std::fmt::Write as _;

use canopy_protocol::feature::FeatureDoc;

/// At most this many learnings and decisions are listed (the newest).
const MAX_ITEMS: usize = 40;
/// Each listed text is cut at this many characters.
const MAX_ITEM_CHARS: usize = 400;

fn cut(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() <= MAX_ITEM_CHARS {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(MAX_ITEM_CHARS).collect();
    out.push('…');
    out
}

fn name_of(doc: &FeatureDoc, user: &str) -> String {
    if let Some(session) = user.strip_prefix("agent:") {
        return format!("the agent of session {session}");
    }
    doc.participants
        .get(user)
        .map(|p| p.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| user.to_owned())
}

/// The system text for a prompt by `author` in `session_id`.
pub fn system_text(doc: &FeatureDoc, session_id: &str, author: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "You are a coding agent working in a shared workspace for Canopy, a team's \
         multiplayer agent platform. Several people and agents work on this feature together."
    );
    let _ = writeln!(s, "\n# Feature: {}", cut(&doc.title));
    if !doc.description.trim().is_empty() {
        let _ = writeln!(s, "{}", cut(&doc.description));
    }
    if let Some(repo) = &doc.repo {
        let _ = writeln!(s, "Repository: {} (base {})", repo.url, repo.base_branch);
    }
    if let Some(session) = doc.sessions.get(session_id) {
        let _ = writeln!(s, "\n# Your session: {}", cut(&session.title));
        if !session.scope.trim().is_empty() {
            let _ = writeln!(s, "Scope: {}", cut(&session.scope));
        }
    }
    let _ = writeln!(s, "\nThis prompt was written by {}.", name_of(doc, author));
    if !doc.learnings.is_empty() {
        let _ = writeln!(s, "\n# Learnings (newest first)");
        for l in doc.learnings.iter().rev().take(MAX_ITEMS) {
            let files = if l.files.is_empty() {
                String::new()
            } else {
                format!(" [{}]", l.files.join(", "))
            };
            let _ = writeln!(
                s,
                "- ({}) {}{files} — {}",
                l.importance.as_str(),
                cut(&l.text),
                name_of(doc, &l.author)
            );
        }
    }
    if !doc.decisions.is_empty() {
        let _ = writeln!(s, "\n# Decisions (newest first)");
        for d in doc.decisions.iter().rev().take(MAX_ITEMS) {
            let _ = write!(s, "- {}", cut(&d.decision));
            if !d.rationale.trim().is_empty() {
                let _ = write!(s, " — because {}", cut(&d.rationale));
            }
            let _ = writeln!(s);
        }
    }
    if !doc.key_files.is_empty() {
        let _ = writeln!(s, "\n# Key files");
        for (path, f) in doc.key_files.iter().take(MAX_ITEMS) {
            let _ = writeln!(s, "- {path}: {}", cut(&f.note));
        }
    }
    let siblings: Vec<_> = doc
        .sessions
        .iter()
        .filter(|(id, _)| id.as_str() != session_id)
        .collect();
    if !siblings.is_empty() {
        let _ = writeln!(s, "\n# Other sessions of this feature");
        for (id, sess) in siblings.iter().take(MAX_ITEMS) {
            let _ = writeln!(s, "- {} ({id}): {}", cut(&sess.title), sess.status.as_str());
        }
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use canopy_protocol::{
        ChangeMeta,
        feature::{self, NewFeature, NewLearning, NewSession},
        ids,
    };

    #[test]
    fn the_context_names_the_feature_the_author_and_the_siblings() {
        let mut doc = feature::new_feature_document(&NewFeature {
            feature_id: ids::new_feature_id(),
            title: "Add OAuth login".into(),
            description: "Users sign in with GitHub".into(),
            repo: None,
            created_by: "usr_alice".into(),
            created_by_name: "Alice".into(),
            created_at: 1,
        })
        .unwrap();
        let (a, b) = (ids::new_session_id(), ids::new_session_id());
        doc.transact_with(
            |_| ChangeMeta::now("t").commit_options(),
            |tx| {
                for (id, title) in [(&a, "Provider"), (&b, "Tests")] {
                    feature::add_session(
                        tx,
                        &NewSession {
                            session_id: id.clone(),
                            title: title.into(),
                            scope: String::new(),
                            depends_on: vec![],
                            created_by: "usr_alice".into(),
                            created_at: 1,
                        },
                    )?;
                }
                feature::add_learning(
                    tx,
                    &NewLearning {
                        id: ids::new_learning_id(),
                        text: "The callback URL must be https".into(),
                        author: "usr_alice".into(),
                        from_session: None,
                        importance: Default::default(),
                        files: vec!["src/auth.rs".into()],
                        created_at: 1,
                    },
                )
            },
        )
        .unwrap();
        let read = feature::read(&doc).unwrap();
        let text = system_text(&read, &a, "usr_alice");
        assert!(text.contains("# Feature: Add OAuth login"), "{text}");
        assert!(text.contains("# Your session: Provider"), "{text}");
        assert!(text.contains("written by Alice"), "{text}");
        assert!(
            text.contains("callback URL must be https [src/auth.rs]"),
            "{text}"
        );
        assert!(text.contains("Tests ("), "{text}");
        assert!(
            !text.contains("Provider ("),
            "its own session is not a sibling: {text}"
        );
    }

    #[test]
    fn long_texts_are_cut() {
        assert_eq!(cut(&"é".repeat(1000)).chars().count(), MAX_ITEM_CHARS + 1);
    }
}
