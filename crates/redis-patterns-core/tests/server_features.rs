//! A server that cannot give a pattern what it needs answers with one typed error naming the
//! missing feature, not a syntax or protocol error from deep inside a call.

mod local {
    use redis_core::{Error, Feature, Redis, redis};
    use redis_test_support::TestServer;

    /// `CLIENT TRACKING` taken away by an ACL rule (the near cache needs it): the probe fails
    /// with `FeatureRefused(ClientTracking)`, while everything else still works for that user.
    #[tokio::test]
    async fn client_tracking_refused_through_acl_gets_a_typed_error() {
        let server = TestServer::spawn();
        let _: () = server
            .cmd(
                redis::cmd("ACL")
                    .arg("SETUSER")
                    .arg("no-tracking")
                    .arg("on")
                    .arg(">secret")
                    .arg("~*")
                    .arg("&*")
                    .arg("+@all")
                    .arg("-client"),
            )
            .unwrap();
        let url = format!("redis://no-tracking:secret@127.0.0.1:{}", server.port());
        let redis = Redis::open(&url).await.unwrap();
        let _: String = redis.query(&redis::cmd("PING")).await.unwrap();
        redis.probe(Feature::Resp3).await.unwrap();

        let err = redis
            .probe(Feature::ClientTracking)
            .await
            .expect_err("CLIENT is denied to this user");
        match &err {
            Error::FeatureRefused { feature, detail } => {
                assert_eq!(*feature, Feature::ClientTracking, "{err}");
                assert!(
                    detail.contains("NOPERM") || detail.contains("permission"),
                    "{detail}"
                );
            }
            other => panic!("expected FeatureRefused(ClientTracking), got {other:?}"),
        }
        assert!(err.to_string().contains("CLIENT TRACKING"), "{err}");

        // The default user has it.
        let admin = Redis::open(&server.url()).await.unwrap();
        admin.probe(Feature::ClientTracking).await.unwrap();
    }

    /// The version is read from the server once, and every feature is checked against it.
    #[tokio::test]
    async fn the_server_version_is_read_and_features_are_checked_against_it() {
        let server = TestServer::spawn();
        let redis = Redis::open(&server.url()).await.unwrap();
        let version = redis.server_version().await.unwrap();
        let info: String = server.cmd(redis::cmd("INFO").arg("server")).unwrap();
        assert!(
            info.contains(&format!("redis_version:{version}")),
            "{version}"
        );
        for feature in [
            Feature::Resp3,
            Feature::ClientTracking,
            Feature::SetNxGet,
            Feature::ExpireConditions,
            Feature::AclDryRun,
            Feature::ShardedPubSub,
        ] {
            let has = version >= feature.since();
            assert_eq!(has, redis.require(feature).await.is_ok(), "{feature}");
            assert_eq!(has, redis.probe(feature).await.is_ok(), "{feature}");
        }
    }
}
