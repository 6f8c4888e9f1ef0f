//! Connect, build keys that stay on one cluster slot, run a script with the server's clock, and
//! use a dedicated connection for a blocking command.
//!
//! Run: `REDIS_URL=redis://127.0.0.1:6379 cargo run -p redis-patterns-core --example core_quickstart`

use redis_core::{Config, KeySpace, Redis, Script, redis};

static STAMP: Script = Script::new(
    "stamp",
    "local t = redis.call('TIME')
     redis.call('SET', KEYS[1], t[1], 'EX', 60)
     return redis.call('INCR', KEYS[2])",
);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = Redis::connect(&Config::from_url(&url)?).await?;
    println!("connected to {url} ({:?})", redis.topology());

    let keys = KeySpace::new("example")?.pattern(&format!("core{}", std::process::id()))?;
    let key = keys.key("user:42")?;
    let counter = key.companion("count");
    let n: i64 = STAMP.call().key(&key).key(&counter).invoke(&redis).await?;
    println!(
        "{key} and {counter} share slot {}; counter = {n}",
        key.slot()
    );

    let mut conn = redis.dedicated().await?;
    let _: () = redis::cmd("RPUSH")
        .arg(key.companion("jobs"))
        .arg("job-1")
        .query_async(&mut conn)
        .await?;
    let job: Option<(String, String)> = redis::cmd("BLPOP")
        .arg(key.companion("jobs"))
        .arg(1)
        .query_async(&mut conn)
        .await?;
    println!("blocking pop on a dedicated connection: {job:?}");
    assert_eq!(job.map(|(_, v)| v).as_deref(), Some("job-1"));

    let _: i64 = redis
        .query(
            redis::cmd("DEL")
                .arg(&key)
                .arg(&counter)
                .arg(key.companion("jobs")),
        )
        .await?;
    Ok(())
}
