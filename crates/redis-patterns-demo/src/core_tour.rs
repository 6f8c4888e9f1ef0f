//! redis-patterns-core: one handle, keys that stay on one slot, scripts with the server's clock.

use std::time::Instant;

use redis_core::{Script, redis, script::SERVER_CLOCK};

use crate::Tour;

/// Counts a visit and stamps it with the server's clock (`now_us()` from the core prelude).
static COUNT_AND_STAMP: Script = Script::new(
    "demo_count_and_stamp",
    include_str!("scripts/count_and_stamp.lua"),
)
.with_preludes(&[SERVER_CLOCK]);

pub(crate) async fn run(tour: Tour) -> anyhow::Result<()> {
    let Tour { redis, keys } = tour;
    let keys = keys.pattern("core")?;
    println!("   topology: {:?}", redis.topology());
    let server_now = redis.server_time().await?;
    println!(
        "   server clock: {} ms since the epoch",
        server_now.as_millis()
    );

    let key = keys.key("visits:home")?;
    let stamp = key.companion("last");
    println!(
        "   key {key} and companion {stamp} share slot {} (so one script may touch both on a cluster)",
        key.slot()
    );
    let started = Instant::now();
    let mut last = 0i64;
    for _ in 0..100 {
        last = COUNT_AND_STAMP
            .call()
            .key(&key)
            .key(&stamp)
            .arg(60_000)
            .invoke(&redis)
            .await?;
    }
    println!(
        "   100 script calls (EVALSHA, loaded on first use) in {:.1?}: counter = {last}",
        started.elapsed()
    );

    let err = COUNT_AND_STAMP
        .call()
        .key("unrelated-a")
        .key("unrelated-b")
        .invoke::<i64>(&redis)
        .await
        .expect_err("keys on two slots are refused");
    println!("   two unrelated keys are refused before sending: {err}");

    let mut conn = redis.dedicated().await?;
    let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
    println!("   a dedicated pooled connection (for blocking commands) answers {pong}");
    Ok(())
}
