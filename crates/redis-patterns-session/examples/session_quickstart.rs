//! The session store on its own: create, load, update a field, log in (rotate), list and revoke.
//!
//! Run: `cargo run -p redis-patterns-session --example session_quickstart`
//! (reads `REDIS_URL`, default `redis://127.0.0.1:6379`).

use std::time::Duration;

use redis_core::{KeySpace, Redis};
use redis_session::SessionStore;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Prefs {
    theme: String,
    cart: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let redis = Redis::open(&url).await?;
    let keys = KeySpace::new(&format!("example-session-{}", std::process::id()))?;
    let store = SessionStore::builder(redis, &keys)
        .idle_timeout(Duration::from_secs(30 * 60))
        .absolute_timeout(Duration::from_secs(8 * 3600))
        .build()?;

    // An anonymous visitor gets a session; the id goes into a cookie, Redis sees only its digest.
    let prefs = Prefs {
        theme: "dark".into(),
        cart: vec!["lamp".into()],
    };
    let id = store.create(&prefs).await?;
    println!("new session, cookie value {} chars", id.as_str().len());
    println!("stored under {}", store.key_of(&id)?.ok_or("bad id")?);

    // One field changes without rewriting the others.
    store.set_field(&id, "theme", "light").await?;

    // Logging in: the data moves to a new id owned by the user; the old id is dead.
    let id = store
        .rotate_for_user(&id, "alice")
        .await?
        .ok_or("session vanished")?;
    let session = store.load(&id).await?.ok_or("session vanished")?;
    let loaded: Prefs = session.deserialize()?;
    println!("logged in as {:?}: {loaded:?}", session.user());
    if loaded.theme != "light" || session.user() != Some("alice") {
        return Err("unexpected session content".into());
    }

    // A second device, then "sign out everywhere".
    store.create_for_user("alice", &prefs).await?;
    let listed = store.list_user("alice").await?;
    println!("alice has {} sessions", listed.len());
    let revoked = store.revoke_user("alice").await?;
    println!(
        "revoked {revoked}; the cookie now loads {:?}",
        store.load(&id).await?.map(|_| ())
    );
    if listed.len() != 2 || revoked != 2 || store.load(&id).await?.is_some() {
        return Err("revocation did not end every session".into());
    }
    // Garbage in a cookie is simply no session.
    if store.load("forged-cookie-value").await?.is_some() {
        return Err("a forged id loaded".into());
    }
    Ok(())
}
