//! Every documented metric of redis-patterns-session is recorded by the operation that should record it,
//! with the documented labels and nothing else; no label or span field carries a session id (raw
//! or hashed) or a user id, through the store, the per-user index and the tower-sessions store.

mod support;

use std::collections::BTreeSet;

use redis_session::{Error, METRICS, SessionStore};
use redis_test_support::{Metrics, Observed, TestContext, assert_no_field_contains, observe};
use support::cart;

const EVENTS: &str = "redis_patterns_session_events_total";
const DURATION: &str = "redis_patterns_session_operation_duration_seconds";
const NAME: &str = "web-sessions";
const USER: &str = "olga-7f3q-user";
const OTHER_USER: &str = "ivan-9k2w-user";

/// The metrics recorded by one table row: they must include `(metric, label values)` for each
/// expectation and pass the documentation check.
struct Rows<'a> {
    observed: &'a Observed,
    taken: Vec<Metrics>,
    covered: BTreeSet<(&'static str, &'static str)>,
}

impl Rows<'_> {
    #[track_caller]
    fn row(
        &mut self,
        what: &str,
        expected: &[(&'static str, &'static str, &'static str)],
    ) -> &Metrics {
        let metrics = self.observed.take_metrics();
        for &(metric, label, value) in expected {
            eprintln!("{what}: {metric} {{{label}={value}}}");
            metrics.assert_recorded(metric, &[("name", NAME), (label, value)]);
            self.covered.insert((metric, value));
        }
        metrics.assert_documented(&[METRICS, redis_core::metrics::METRICS]);
        self.taken.push(metrics);
        &self.taken[self.taken.len() - 1]
    }
}

#[tokio::test]
async fn every_session_metric_is_recorded_and_no_id_reaches_a_label_or_span() {
    let observed = observe().await;
    let ctx = TestContext::new().await;
    let store = SessionStore::builder(ctx.redis().clone(), &ctx.keyspace())
        .name(NAME)
        .build()
        .unwrap();
    assert_eq!(store.name(), NAME);
    for bad in ["", "web sessions", "user:42", &"x".repeat(65)] {
        let built = SessionStore::builder(ctx.redis().clone(), &ctx.keyspace())
            .name(bad)
            .build();
        assert!(matches!(built, Err(Error::InvalidConfig(_))), "{bad:?}");
    }
    let mut rows = Rows {
        observed: &observed,
        taken: Vec::new(),
        covered: BTreeSet::new(),
    };
    // Every id, digest and user the operations see: none may reach a label or a span field.
    let mut secrets: Vec<String> = vec![USER.to_owned(), OTHER_USER.to_owned()];
    let remember = |secrets: &mut Vec<String>, id: &str| {
        let key = store.key_of(id).unwrap().unwrap();
        let digest = key.as_str().rsplit(':').next().unwrap().to_owned();
        secrets.push(id.to_owned());
        secrets.push(digest);
    };

    let anon = store.create(&cart()).await.unwrap();
    remember(&mut secrets, anon.as_str());
    rows.row(
        "create",
        &[
            (EVENTS, "event", "created"),
            (DURATION, "operation", "create"),
        ],
    );

    let owned = store.create_for_user(USER, &cart()).await.unwrap();
    remember(&mut secrets, owned.as_str());
    rows.row("create_for_user", &[(EVENTS, "event", "created")]);

    assert!(store.load(&owned).await.unwrap().is_some());
    rows.row(
        "load",
        &[(EVENTS, "event", "loaded"), (DURATION, "operation", "load")],
    );

    assert!(store.touch(&owned).await.unwrap());
    rows.row("touch", &[(EVENTS, "event", "loaded")]);

    assert!(store.set_field(&owned, "theme", "light").await.unwrap());
    assert!(store.remove_field(&owned, "theme").await.unwrap());
    assert!(store.update(&owned, &cart()).await.unwrap());
    rows.row(
        "set_field, remove_field, update",
        &[(DURATION, "operation", "update")],
    );

    let rotated = store.rotate(&owned).await.unwrap().unwrap();
    remember(&mut secrets, rotated.as_str());
    rows.row(
        "rotate",
        &[
            (EVENTS, "event", "rotated"),
            (DURATION, "operation", "rotate"),
        ],
    );

    // The rotated-away id is unknown now.
    assert!(store.load(&owned).await.unwrap().is_none());
    assert!(!store.touch(&owned).await.unwrap());
    assert!(store.load("not a session id").await.unwrap().is_none());
    rows.row("load of an unknown id", &[(EVENTS, "event", "missing")]);

    let logged_in = store.rotate_for_user(&anon, USER).await.unwrap().unwrap();
    remember(&mut secrets, logged_in.as_str());
    rows.row("rotate_for_user", &[(EVENTS, "event", "rotated")]);

    let listed = store.list_user(USER).await.unwrap();
    assert_eq!(listed.len(), 2);
    secrets.extend(listed.iter().map(|s| s.handle.clone()));
    rows.row("list_user", &[(DURATION, "operation", "list")]);

    assert!(store.revoke(USER, &listed[0].handle).await.unwrap());
    rows.row(
        "revoke",
        &[
            (EVENTS, "event", "revoked"),
            (DURATION, "operation", "revoke"),
        ],
    );

    assert_eq!(store.revoke_user(USER).await.unwrap(), 1);
    let metrics = rows.row("revoke_user", &[(EVENTS, "event", "revoked")]);
    assert_eq!(
        metrics.value(EVENTS, &[("name", NAME), ("event", "revoked")]),
        1.0
    );

    let other = store.create_for_user(OTHER_USER, &cart()).await.unwrap();
    remember(&mut secrets, other.as_str());
    let anon = store.create(&cart()).await.unwrap();
    remember(&mut secrets, anon.as_str());
    observed.take_metrics();
    assert!(store.destroy(&other).await.unwrap());
    assert!(store.destroy(&anon).await.unwrap());
    assert!(!store.destroy(&anon).await.unwrap());
    let metrics = rows.row(
        "destroy",
        &[
            (EVENTS, "event", "destroyed"),
            (DURATION, "operation", "destroy"),
        ],
    );
    assert_eq!(
        metrics.value(EVENTS, &[("name", NAME), ("event", "destroyed")]),
        2.0
    );
    assert_eq!(
        metrics.value(DURATION, &[("name", NAME), ("operation", "destroy")]),
        3.0
    );

    let needles: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let spans = observed.take_spans();
    assert_no_field_contains(&spans, &needles);
    assert_store_spans(&spans);

    #[cfg(feature = "tower-sessions")]
    tower_rows(&mut rows, &store, &mut secrets).await;

    let needles: Vec<&str> = secrets.iter().map(String::as_str).collect();
    for metrics in &rows.taken {
        metrics.assert_documented(&[METRICS, redis_core::metrics::METRICS]);
        metrics.assert_no_label_contains(&needles);
        for sample in &metrics.0 {
            if sample.name.starts_with("redis_patterns_session_") {
                assert!(sample.labels.contains(&("name".into(), NAME.into())));
            }
        }
    }

    // Coverage: every documented metric, every event and every operation.
    let wanted: BTreeSet<(&str, &str)> = [
        "created",
        "loaded",
        "missing",
        "rotated",
        "revoked",
        "destroyed",
    ]
    .map(|e| (EVENTS, e))
    .into_iter()
    .chain(
        [
            "create", "load", "update", "rotate", "destroy", "revoke", "list",
        ]
        .map(|o| (DURATION, o)),
    )
    .collect();
    assert_eq!(rows.covered, wanted);
    for doc in METRICS {
        assert!(
            rows.covered.iter().any(|(m, _)| *m == doc.name),
            "{}",
            doc.name
        );
    }
}

/// Every store operation has its span, with the store's name and its outcome.
fn assert_store_spans(spans: &[redis_test_support::SpanRecord]) {
    let names: BTreeSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "session.create",
        "session.create_for_user",
        "session.load",
        "session.touch",
        "session.set_field",
        "session.update",
        "session.remove_field",
        "session.rotate",
        "session.rotate_for_user",
        "session.list_user",
        "session.revoke",
        "session.revoke_user",
        "session.destroy",
    ] {
        let span = spans.iter().find(|s| s.name == expected);
        let span = span.unwrap_or_else(|| panic!("no span {expected}: {names:?}"));
        assert!(
            span.fields.contains(&("name".into(), NAME.into())),
            "{expected}: {:?}",
            span.fields
        );
    }
    let recorded: BTreeSet<(&str, &str)> = spans
        .iter()
        .flat_map(|s| s.fields.iter())
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for outcome in [
        "created",
        "loaded",
        "missing",
        "updated",
        "rotated",
        "revoked",
        "destroyed",
    ] {
        assert!(
            recorded.contains(&("outcome", outcome)),
            "outcome {outcome}"
        );
    }
}

#[cfg(feature = "tower-sessions")]
async fn tower_rows(rows: &mut Rows<'_>, store: &SessionStore, secrets: &mut Vec<String>) {
    use redis_session::TowerSessionStore;
    use tower_sessions::{
        SessionStore as _,
        session::{Id, Record},
    };

    let tower = TowerSessionStore::new(store.clone());
    let mut record = Record {
        id: Id::default(),
        data: [("counter".to_owned(), serde_json::json!(1))].into(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::minutes(10),
    };
    tower.create(&mut record).await.unwrap();
    let key = tower.key_of(&record.id).unwrap();
    secrets.push(record.id.to_string());
    secrets.push(key.as_str().rsplit(':').next().unwrap().to_owned());
    rows.row("tower create", &[(EVENTS, "event", "created")]);

    assert!(tower.load(&record.id).await.unwrap().is_some());
    rows.row("tower load", &[(EVENTS, "event", "loaded")]);

    record
        .data
        .insert("counter".to_owned(), serde_json::json!(2));
    tower.save(&record).await.unwrap();
    rows.row("tower save", &[(DURATION, "operation", "update")]);

    tower.delete(&record.id).await.unwrap();
    rows.row(
        "tower delete",
        &[
            (EVENTS, "event", "destroyed"),
            (DURATION, "operation", "destroy"),
        ],
    );

    assert!(tower.load(&record.id).await.unwrap().is_none());
    rows.row(
        "tower load of a deleted id",
        &[(EVENTS, "event", "missing")],
    );

    let spans = rows.observed.take_spans();
    for expected in [
        "session.tower.create",
        "session.tower.load",
        "session.tower.save",
        "session.tower.delete",
    ] {
        assert!(
            spans.iter().any(|s| s.name == expected),
            "no span {expected}"
        );
    }
    let needles: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_no_field_contains(&spans, &needles);
}

/// The observed operations stay `Send` (a compile-time check: never called).
#[allow(dead_code)]
fn operation_futures_are_send(store: &SessionStore, id: &str) {
    fn send<T: Send>(_: T) {}
    send(store.create(&support::cart()));
    send(store.create_for_user("u", &support::cart()));
    send(store.load(id));
    send(store.touch(id));
    send(store.set_field(id, "f", &1));
    send(store.update(id, &support::cart()));
    send(store.remove_field(id, "f"));
    send(store.rotate(id));
    send(store.rotate_for_user(id, "u"));
    send(store.destroy(id));
    send(store.list_user("u"));
    send(store.revoke("u", id));
    send(store.revoke_user("u"));
}
