//! The standalone backend against real servers: commands, pool, errors, recovery.

use std::time::Duration;

use redis::AsyncCommands;
use redis_core::{Config, Error, Redis, Script};
use redis_test_support::{FaultProxy, TestContext, TestServer, wait_until};

#[tokio::test]
async fn shared_and_dedicated_connections_run_commands() {
    let ctx = TestContext::new().await;
    let key = ctx
        .keyspace()
        .pattern("core")
        .unwrap()
        .key("greeting")
        .unwrap();
    let mut conn = ctx.redis().clone();
    let _: () = conn.set_ex(&key, "hello", 60).await.unwrap();
    let value: String = ctx
        .redis()
        .query(redis::cmd("GET").arg(&key))
        .await
        .unwrap();
    assert_eq!(value, "hello");

    let mut dedicated = ctx.redis().dedicated().await.unwrap();
    let value: String = dedicated.get(&key).await.unwrap();
    assert_eq!(value, "hello");

    let (a, b): (i64, i64) = ctx
        .redis()
        .query_pipeline(
            redis::pipe()
                .atomic()
                .incr(key.companion("n"), 1)
                .incr(key.companion("n"), 2),
        )
        .await
        .unwrap();
    assert_eq!((a, b), (1, 3));
    let ttl: i64 = conn.ttl(&key).await.unwrap();
    assert!(ttl > 0 && ttl <= 60, "ttl {ttl}");
}

#[tokio::test]
async fn many_concurrent_callers_share_the_multiplexed_connection() {
    let ctx = TestContext::new().await;
    let key = ctx.keyspace().key("counter").unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let redis = ctx.redis().clone();
            let key = key.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    let _: i64 = redis.query(redis::cmd("INCR").arg(&key)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let total: i64 = ctx
        .redis()
        .query(redis::cmd("GET").arg(&key))
        .await
        .unwrap();
    assert_eq!(total, 1000);
}

#[tokio::test]
async fn scripts_reload_after_script_flush() {
    static ECHO_KEY: Script = Script::new("echo_key", "return KEYS[1] .. ARGV[1]");
    let ctx = TestContext::private().await;
    let key = ctx.keyspace().key("k").unwrap();
    let first: String = ECHO_KEY
        .call()
        .key(&key)
        .arg("!")
        .invoke(ctx.redis())
        .await
        .unwrap();
    assert_eq!(first, format!("{key}!"));
    let _: () = ctx
        .redis()
        .query(&redis::cmd("SCRIPT").arg("FLUSH").to_owned())
        .await
        .unwrap();
    let second: String = ECHO_KEY
        .call()
        .key(&key)
        .arg("?")
        .invoke(ctx.redis())
        .await
        .unwrap();
    assert_eq!(second, format!("{key}?"));
}

#[tokio::test]
async fn scripts_with_keys_on_two_slots_are_refused_before_sending() {
    static TWO: Script = Script::new("two", "return 1");
    let ctx = TestContext::new().await;
    let err = TWO
        .call()
        .key("a")
        .key("b")
        .invoke::<i64>(ctx.redis())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::CrossSlot(ref m) if m.contains("\"a\"") && m.contains("\"b\"")),
        "{err}"
    );
}

#[tokio::test]
async fn server_time_is_close_to_local_time() {
    let ctx = TestContext::new().await;
    let server = ctx.redis().server_time().await.unwrap();
    let local = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let skew = server.abs_diff(local);
    assert!(skew < Duration::from_secs(60), "skew {skew:?}");
}

#[tokio::test]
async fn pool_exhaustion_is_a_timeout_error_not_a_hang() {
    let server = TestServer::spawn();
    let config = Config::builder()
        .url(server.url())
        .pool_max_size(1)
        .pool_connection_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let redis = Redis::connect(&config).await.unwrap();
    let held = redis.dedicated().await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), redis.dedicated())
        .await
        .expect("checkout must not hang")
        .unwrap_err();
    assert!(matches!(err, Error::PoolTimeout(_)), "{err}");
    assert!(err.is_timeout() && err.is_retryable());
    drop(held);
    redis
        .dedicated()
        .await
        .expect("a returned connection is reusable");
}

#[tokio::test]
async fn a_checkout_while_the_server_is_down_fails_fast_with_the_cause() {
    let mut server = TestServer::spawn();
    let timeout = Duration::from_secs(30);
    let config = Config::builder()
        .url(server.url())
        .pool_connection_timeout(timeout)
        .build()
        .unwrap();
    let redis = Redis::connect(&config).await.unwrap();
    drop(redis.dedicated().await.unwrap());
    server.kill();
    // The pooled connection is dead (closed by the checkout check) and a new one is refused:
    // the checkout reports that, instead of waiting out its 30 s time-out.
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(timeout / 2, redis.dedicated())
        .await
        .expect("a checkout while the server is down does not wait out its time-out")
        .unwrap_err();
    assert!(!matches!(err, Error::PoolTimeout(_)), "{err}");
    assert!(err.is_retryable(), "{err}");
    eprintln!("checkout failed after {:?}: {err}", started.elapsed());
    server.restart();
    wait_until(
        "a checkout works again",
        Duration::from_secs(10),
        || async { redis.dedicated().await.is_ok() },
    )
    .await;
}

#[tokio::test]
async fn a_dedicated_connection_dropped_mid_command_is_not_reused() {
    let server = TestServer::spawn();
    let config = Config::builder()
        .url(server.url())
        .pool_max_size(1)
        .build()
        .unwrap();
    let redis = Redis::connect(&config).await.unwrap();
    let client_id = |mut conn: redis_core::DedicatedConnection| async move {
        let id: i64 = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut conn)
            .await
            .unwrap();
        (id, conn)
    };

    // A completed command leaves the connection reusable: the pool hands the same one back.
    let (first, conn) = client_id(redis.dedicated().await.unwrap()).await;
    drop(conn);
    let (again, mut conn) = client_id(redis.dedicated().await.unwrap()).await;
    assert_eq!(first, again);

    // A blocking command abandoned by its caller would stall the next user for the rest of its
    // block time; the pool must close that connection instead.
    let abandoned = tokio::time::timeout(Duration::from_millis(200), async {
        let _: Option<(String, String)> = redis::cmd("BLPOP")
            .arg("never-pushed")
            .arg(60)
            .query_async(&mut conn)
            .await
            .unwrap();
    })
    .await;
    assert!(abandoned.is_err(), "BLPOP cannot return: nothing is pushed");
    drop(conn);
    let (fresh, conn) = tokio::time::timeout(
        Duration::from_secs(20),
        client_id(redis.dedicated().await.unwrap()),
    )
    .await
    .expect("the next checkout must not wait out the abandoned BLPOP");
    assert_ne!(
        fresh, again,
        "a connection with a pending reply was handed out again"
    );
    drop(conn);
}

#[tokio::test]
async fn a_checked_out_connection_carries_no_watch_or_multi_state_of_its_previous_holder() {
    let ctx = TestContext::new().await;
    let config = Config::builder()
        .url(ctx.url())
        .pool_max_size(1)
        .build()
        .unwrap();
    let redis = Redis::connect(&config).await.unwrap();
    let key = ctx.keyspace().key("watched").unwrap();

    // A holder WATCHes a key and goes away without EXEC; someone else then changes the key.
    let mut conn = redis.dedicated().await.unwrap();
    let _: () = redis::cmd("WATCH")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    drop(conn);
    let _: () = redis
        .query(redis::cmd("SET").arg(&key).arg("changed"))
        .await
        .unwrap();
    // The next holder's transaction must not be aborted by the stale WATCH.
    let mut conn = redis.dedicated().await.unwrap();
    let (value,): (String,) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(&key)
        .arg("mine")
        .ignore()
        .cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("EXEC ran: no WATCH was inherited");
    assert_eq!(value, "mine");

    // A holder leaves the connection inside MULTI: the next holder's commands must run, not queue.
    let _: () = redis::cmd("MULTI").query_async(&mut conn).await.unwrap();
    drop(conn);
    let mut conn = redis.dedicated().await.unwrap();
    let value: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(value, "mine");
}

#[tokio::test]
async fn wrong_password_is_an_authentication_error() {
    let server = TestServer::builder().password("right").spawn();
    let url = format!("redis://:wrong@127.0.0.1:{}", server.port());
    let err = Redis::open(&url).await.unwrap_err();
    assert!(matches!(err, Error::Authentication(_)), "{err:?}");
    assert!(err.is_auth_error());
    // And the right one works.
    let redis = Redis::open(&server.url()).await.unwrap();
    let pong: String = redis.query(&redis::cmd("PING")).await.unwrap();
    assert_eq!(pong, "PONG");
    // No password at all is an authentication error too.
    let err = Redis::open(&format!("redis://127.0.0.1:{}", server.port())).await;
    let err = err.unwrap_err();
    assert!(err.is_auth_error(), "{err:?}");
}

#[tokio::test]
async fn malformed_urls_are_config_errors() {
    for url in [
        "localhost:6379",
        "redis://",
        "redis://h:port",
        "http://127.0.0.1",
    ] {
        let err = Redis::open(url).await.unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{url}: {err:?}");
    }
}

#[tokio::test]
async fn a_killed_server_gives_errors_then_recovery_once_back() {
    let mut ctx = TestContext::private().await;
    let redis = ctx.redis().clone();
    let key = ctx.keyspace().key("k").unwrap();
    let _: () = redis
        .query(redis::cmd("SET").arg(&key).arg(1))
        .await
        .unwrap();

    ctx.server().unwrap().kill();
    let err = redis
        .query::<Option<String>>(redis::cmd("GET").arg(&key))
        .await
        .unwrap_err();
    assert!(err.is_connection_error() && err.is_retryable(), "{err:?}");

    ctx.server().unwrap().restart();
    wait_until(
        "the shared connection to recover",
        Duration::from_secs(20),
        || {
            let redis = redis.clone();
            let key = key.clone();
            async move {
                redis
                    .query::<()>(redis::cmd("SET").arg(&key).arg(2))
                    .await
                    .is_ok()
            }
        },
    )
    .await;
    let value: i64 = redis.query(redis::cmd("GET").arg(&key)).await.unwrap();
    assert_eq!(value, 2);
    // The pool recovers too: dead connections are replaced.
    wait_until("the pool to recover", Duration::from_secs(20), || {
        let redis = redis.clone();
        async move {
            match redis.dedicated().await {
                Ok(mut c) => redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;
}

#[tokio::test]
async fn an_unresponsive_server_times_out_instead_of_hanging() {
    let server = TestServer::spawn();
    let proxy = FaultProxy::start(server.port()).await;
    let config = Config::builder()
        .url(proxy.url())
        .response_timeout(Some(Duration::from_millis(300)))
        .build()
        .unwrap();
    let redis = Redis::connect(&config).await.unwrap();
    let _: String = redis.query(&redis::cmd("PING")).await.unwrap();
    proxy.set_blackhole(true);
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        redis.query::<String>(&redis::cmd("PING")),
    )
    .await
    .expect("must not hang")
    .unwrap_err();
    assert!(err.is_timeout() && err.is_retryable(), "{err:?}");
    proxy.set_blackhole(false);
    proxy.reset_all();
    wait_until(
        "recovery after the partition heals",
        Duration::from_secs(20),
        || {
            let redis = redis.clone();
            async move { redis.query::<String>(&redis::cmd("PING")).await.is_ok() }
        },
    )
    .await;
}

#[tokio::test]
async fn acl_user_password_and_db_index_from_the_url_are_used() {
    let server = TestServer::spawn();
    let _: () = server
        .cmd(
            redis::cmd("ACL")
                .arg("SETUSER")
                .arg("app")
                .arg("on")
                .arg(">s3cret")
                .arg("~*")
                .arg("+@all"),
        )
        .unwrap();
    let url = format!("redis://app:s3cret@127.0.0.1:{}/3", server.port());
    let redis = Redis::open(&url).await.unwrap();
    let whoami: String = redis
        .query(&redis::cmd("ACL").arg("WHOAMI").to_owned())
        .await
        .unwrap();
    assert_eq!(whoami, "app");
    let _: () = redis
        .query(redis::cmd("SET").arg("in-db-3").arg(1))
        .await
        .unwrap();
    let in_db_3: i64 = server
        .cmd(
            redis::cmd("EVAL")
                .arg("redis.call('SELECT', 3) return redis.call('EXISTS', 'in-db-3')")
                .arg(0),
        )
        .unwrap();
    assert_eq!(in_db_3, 1);
    // The pool uses the same settings.
    let mut dedicated = redis.dedicated().await.unwrap();
    let db_key_exists: i64 = redis::cmd("EXISTS")
        .arg("in-db-3")
        .query_async(&mut dedicated)
        .await
        .unwrap();
    assert_eq!(db_key_exists, 1);

    let wrong = format!("redis://app:nope@127.0.0.1:{}/3", server.port());
    assert!(Redis::open(&wrong).await.unwrap_err().is_auth_error());
}
