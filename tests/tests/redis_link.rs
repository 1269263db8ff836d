//! Which Redis connection a command goes out on, on real Redis: a thread that
//! runs a single-threaded runtime (an actix worker, here a `#[tokio::test]`)
//! gets one of its own after its first call, and a new one after a switch of
//! master; a multi-threaded runtime always uses the shared one.

use std::time::Duration;

use common::redis_link::RedisLink;
use common::settings::RedisSettings;

async fn client_id(link: &RedisLink) -> i64 {
    let mut link = link.clone();
    redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut link)
        .await
        .expect("CLIENT ID")
}

/// Calls until the answer comes from a connection other than `not`s, within 2 s.
async fn next_other(link: &RedisLink, not: &[i64]) -> Option<i64> {
    for _ in 0..200 {
        let id = client_id(link).await;
        if !not.contains(&id) {
            return Some(id);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test]
async fn a_single_threaded_runtime_opens_its_own_connection_and_a_new_one_after_a_switch() {
    let link = RedisLink::connect(&RedisSettings::default())
        .await
        .expect("redis");
    // The first call is served by the shared connection while this thread's
    // own opens.
    let shared = client_id(&link).await;
    let own = next_other(&link, &[shared])
        .await
        .expect("this thread never got a connection of its own");
    for _ in 0..20 {
        assert_eq!(
            client_id(&link).await,
            own,
            "the own connection stays in use"
        );
    }

    // A switch (to the same master here) replaces both: the old own
    // connection is never used again.
    let master = link.master();
    let fresh = link.connect_to(&master).await.expect("connect_to");
    link.switch_to(master, fresh);
    let after = client_id(&link).await;
    assert_ne!(
        after, own,
        "a connection opened before the switch was used after it"
    );
    assert_ne!(after, shared);
    let own_after = next_other(&link, &[after, own, shared])
        .await
        .expect("no own connection was opened after the switch");
    for _ in 0..20 {
        assert_eq!(client_id(&link).await, own_after);
    }

    // A multi-threaded runtime's tasks move between threads: the shared one
    // (whose driver runs on this test's runtime, so this one is not blocked).
    let on_pool = tokio::task::spawn_blocking({
        let link = link.clone();
        move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let mut ids = Vec::new();
                    for _ in 0..20 {
                        ids.push(client_id(&link).await);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    ids
                })
        }
    })
    .await
    .unwrap();
    assert!(
        on_pool.iter().all(|id| *id == after),
        "a multi-threaded runtime used another connection than the shared one: {on_pool:?} (shared {after})"
    );
}
