//! redis-patterns-session: hashed ids, timeouts enforced by the server, rotation, per-user revocation.

use std::time::Duration;

use anyhow::Context as _;
use redis_core::redis;
use redis_session::SessionStore;

use crate::Tour;

pub(crate) async fn run(tour: Tour) -> anyhow::Result<()> {
    let Tour { redis, keys } = tour;
    let store = SessionStore::builder(redis.clone(), &keys)
        .idle_timeout(Duration::from_secs(15 * 60))
        .absolute_timeout(Duration::from_secs(8 * 3600))
        .build()?;

    let id = store
        .create(&serde_json::json!({ "cart": ["lamp"], "theme": "dark" }))
        .await?;
    let key = store.key_of(&id)?.context("fresh ids parse")?;
    println!(
        "   new anonymous session: cookie {}… ({} chars), stored under its digest {key}",
        &id.as_str()[..6],
        id.as_str().len()
    );
    let pttl: i64 = redis.query(redis::cmd("PTTL").arg(&key)).await?;
    println!(
        "   the server expires it in {:.0} s (idle timeout; the absolute one is 8 h)",
        pttl as f64 / 1000.0
    );

    store.set_field(&id, "theme", "light").await?;
    let forged = format!("{}x", &id.as_str()[..44]);
    println!(
        "   set one field; a tampered cookie loads {:?}, garbage loads {:?}",
        store.load(&forged).await?.map(|_| "a session"),
        store.load("garbage").await?.map(|_| "a session")
    );

    let logged_in = store
        .rotate_for_user(&id, "alice")
        .await?
        .context("session vanished")?;
    let session = store.load(&logged_in).await?.context("session vanished")?;
    println!(
        "   login rotates the id: old id loads {:?}; new one belongs to {:?}, theme {:?}",
        store.load(&id).await?.map(|_| "a session"),
        session.user().unwrap_or("nobody"),
        session.get::<String>("theme")?.unwrap_or_default()
    );

    store
        .create_for_user("alice", &serde_json::json!({ "device": "phone" }))
        .await?;
    let listed = store.list_user("alice").await?;
    println!(
        "   alice has {} sessions on one slot with her index",
        listed.len()
    );
    let revoked = store.revoke_user("alice").await?;
    println!(
        "   sign out everywhere: {revoked} revoked; the cookie now loads {:?}",
        store.load(&logged_in).await?.map(|_| "a session")
    );
    anyhow::ensure!(revoked == 2, "expected 2 revoked sessions, got {revoked}");
    Ok(())
}
