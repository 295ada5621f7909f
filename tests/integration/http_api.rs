//! The JSON API for clients that do not speak CRDT.

use serde_json::{Value, json};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_list_read_sessions_and_queue() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let client = http();

    let r = client
        .post(format!("{base}/api/features"))
        .json(&json!({
            "title": "Add OAuth login",
            "description": "GitHub and Google",
            "repo": {"url": "https://github.com/acme/app.git", "base_branch": "develop"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = r.json().await.unwrap();
    let feature_id = created["feature_id"].as_str().unwrap().to_owned();
    assert!(feature_id.starts_with("ftr_"));
    assert_eq!(location, format!("/api/features/{feature_id}"));
    assert_eq!(created["sync_url"], server.sync_url());

    let snap = snapshot(&base, &feature_id).await;
    let d = &snap["document"];
    assert_eq!(d["schema"], 1);
    assert_eq!(d["feature_id"], feature_id);
    assert_eq!(d["title"], "Add OAuth login");
    assert_eq!(d["description"], "GitHub and Google");
    assert_eq!(d["status"], "active");
    assert_eq!(d["repo"]["url"], "https://github.com/acme/app.git");
    assert_eq!(d["repo"]["base_branch"], "develop");
    // Attributed to the authenticated caller, who is the feature's owner.
    let me = user_id_of(&base, TOKEN).await;
    assert_eq!(d["created_by"], me.as_str());
    assert_eq!(d["participants"][&me]["role"], "owner");
    assert!(d["created_at"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(snap["doc_url"], created["doc_url"]);
    assert!(!snap["heads"].as_array().unwrap().is_empty());

    // Sessions.
    let r = client
        .post(format!("{base}/api/features/{feature_id}/sessions"))
        .json(&json!({"title": "research auth patterns", "scope": "read only"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let s1: Value = r.json().await.unwrap();
    let s1_id = s1["session_id"].as_str().unwrap().to_owned();
    assert_eq!(s1["status"], "pending");
    assert_eq!(s1["title"], "research auth patterns");
    let r = client
        .post(format!("{base}/api/features/{feature_id}/sessions"))
        .json(&json!({"title": "implement", "depends_on": [s1_id]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let s2: Value = r.json().await.unwrap();
    assert_eq!(s2["depends_on"], json!([s1_id]));

    // Queue.
    let mut ids = Vec::new();
    for text in ["first", "second", "third"] {
        let r = client
            .post(format!("{base}/api/features/{feature_id}/queue"))
            .json(&json!({"session_id": s1_id, "text": text}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["status"], "queued");
        assert_eq!(e["text"], text);
        assert_eq!(e["author"], me.as_str());
        assert_eq!(e["session_id"], s1_id);
        ids.push(e["id"].as_str().unwrap().to_owned());
    }
    let snap = snapshot(&base, &feature_id).await;
    let queue: Vec<&str> = snap["document"]["queue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(queue, ids);
    assert_eq!(snap["document"]["sessions"].as_object().unwrap().len(), 2);

    // Listing and pagination, newest first.
    for i in 0..4 {
        create_feature(&base, &format!("more {i}")).await;
    }
    let page: Value = get_json(format!("{base}/api/features?limit=3")).await;
    let first: Vec<&str> = page["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["title"].as_str().unwrap())
        .collect();
    assert_eq!(first.len(), 3);
    let cursor = page["next_cursor"].as_str().unwrap();
    let page2: Value = get_json(format!("{base}/api/features?limit=3&cursor={cursor}")).await;
    let second: Vec<&str> = page2["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["title"].as_str().unwrap())
        .collect();
    assert_eq!(second.len(), 2);
    assert!(page2["next_cursor"].is_null());
    let all: Vec<&str> = first.iter().chain(second.iter()).copied().collect();
    assert!(all.contains(&"Add OAuth login"));
    assert_eq!(all.len(), 5);
    let mut dedup = all.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 5, "pages overlap: {all:?}");

    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_changes_reach_live_peers() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let (feature_id, doc) = create_feature(&base, "live").await;
    let peer = Peer::connect(&server.sync_url(), "watcher").await;
    let h = peer.find(&doc).await;
    let sid = create_session(&base, &feature_id, "from curl").await;
    let r = http()
        .post(format!("{base}/api/features/{feature_id}/queue"))
        .json(&json!({"session_id": sid, "text": "do the thing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    eventually("the peer sees the API's queue entry", async || {
        read(&h).queue.iter().any(|q| q.text == "do the thing")
    })
    .await;
    assert!(read(&h).sessions.contains_key(&sid));
    peer.stop().await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_follows_titles_edited_by_peers() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let (_, doc) = create_feature(&base, "old title").await;
    let peer = Peer::connect(&server.sync_url(), "renamer").await;
    let h = peer.find(&doc).await;
    edit(&h, "rename", |tx| {
        canopy_protocol::feature::set_title(tx, "new title")?;
        canopy_protocol::feature::set_status(
            tx,
            &canopy_protocol::feature::FeatureStatus::Completed,
        )
    });
    peer.synced(&h).await;
    eventually("the listing shows the new title", async || {
        let list: Value = get_json(format!("{base}/api/features")).await;
        list["features"][0]["title"] == "new title" && list["features"][0]["status"] == "completed"
    })
    .await;
    peer.stop().await;
    // It also holds for documents loaded after a restart.
    server.stop().await.unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let peer = Peer::connect(&server.sync_url(), "renamer2").await;
    let h = peer.find(&doc).await;
    edit(&h, "rename again", |tx| {
        canopy_protocol::feature::set_title(tx, "third title")
    });
    eventually("the listing follows after a restart", async || {
        let list: Value = get_json(format!("{base}/api/features")).await;
        list["features"][0]["title"] == "third title"
    })
    .await;
    peer.stop().await;
    server.stop().await.unwrap();
}

/// The web client's build at `/`: files, client-side routes answered by
/// `index.html`, long-cached assets, a missing asset a 404 (never the
/// page), the API and the sync endpoint untouched, a Content-Security-Policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_client_is_served_at_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web");
    std::fs::create_dir_all(web.join("assets")).unwrap();
    std::fs::write(
        web.join("index.html"),
        "<!doctype html><title>Canopy</title>",
    )
    .unwrap();
    std::fs::write(web.join("assets/app-1a2b.js"), "console.log(1)").unwrap();
    std::fs::write(web.join("sw.js"), "// worker").unwrap();
    let mut config = config_for(&dir.path().join("data"));
    config.web_dir = Some(web.clone());
    let server = start_with(config).await;
    let base = server.url().to_owned();
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move { reqwest::get(url).await.unwrap() }
    };

    for path in ["/", "/f/ftr_abc/s/ses_def", "/signin"] {
        let resp = get(path).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.headers()["cache-control"], "no-cache", "{path}");
        let csp = resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert!(
            resp.text().await.unwrap().contains("<title>Canopy</title>"),
            "{path}"
        );
    }
    let asset = get("/assets/app-1a2b.js").await;
    assert_eq!(asset.status(), 200);
    assert!(
        asset.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert_eq!(asset.text().await.unwrap(), "console.log(1)");
    let missing = get("/assets/app-old.js").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["cache-control"], "no-cache");
    assert_eq!(get("/sw.js").await.text().await.unwrap(), "// worker");
    // Nothing outside the directory, however the path is spelled.
    for path in [
        "/..%2f..%2fdata%2fcanopy.db",
        "/assets/..%2f..%2fdata%2fcanopy.db",
    ] {
        let resp = get(path).await;
        let body = resp.text().await.unwrap();
        assert!(!body.contains("SQLite"), "{path}");
    }
    // The API keeps its JSON errors and its authentication.
    let api = get("/api/features").await;
    assert_eq!(api.status(), 401);
    assert_eq!(
        api.json::<Value>().await.unwrap()["error"]["code"],
        "unauthorized"
    );
    assert_eq!(get("/healthz").await.status(), 200);

    // A directory without a build: the server says where the API is.
    let mut config = config_for(&dir.path().join("data2"));
    config.web_dir = Some(dir.path().join("nothing-built"));
    let bare = start_with(config).await;
    let index: Value = reqwest::get(format!("{}/", bare.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(index["name"], "canopy");
    server.stop().await.unwrap();
    bare.stop().await.unwrap();
}
