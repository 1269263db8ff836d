//! The example settings files stay in step with the settings types
//! (unknown keys are rejected) and really override the defaults.

use std::path::Path;

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config")
        .join(name)
}

#[test]
fn order_service_example_file_loads_every_key() {
    let settings: order_service::settings::Settings =
        common::settings::load_with(Some(&example("order-service.example.yaml")), true)
            .expect("loads");
    assert_eq!(settings.http.port, 8091);
    assert_eq!(settings.orders.max_count_per_order, 5);
}

#[test]
fn stock_service_example_file_loads_every_key() {
    let settings: stock_service::settings::Settings =
        common::settings::load_with(Some(&example("stock-service.example.yaml")), true)
            .expect("loads");
    assert_eq!(settings.consumer.max_reconsume_times, 16);
}

#[test]
fn a_file_overrides_defaults_and_unknown_keys_are_refused() {
    let dir = std::env::temp_dir().join(format!("seckill-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.yaml");
    std::fs::write(
        &good,
        "orders:\n  max_count_per_order: 2\nhttp:\n  port: 9001\n",
    )
    .unwrap();
    let settings: order_service::settings::Settings =
        common::settings::load_with(Some(&good), true).unwrap();
    assert_eq!(settings.orders.max_count_per_order, 2);
    assert_eq!(settings.http.port, 9001);
    assert_eq!(
        settings.database.name, "seckill_order",
        "untouched keys keep their defaults"
    );

    let typo = dir.join("typo.yaml");
    std::fs::write(&typo, "orders:\n  max_count_per_ordr: 2\n").unwrap();
    let err = common::settings::load_with::<order_service::settings::Settings>(Some(&typo), true)
        .unwrap_err();
    assert!(format!("{err:#}").contains("max_count_per_ordr"), "{err:#}");

    assert!(
        common::settings::load_with::<order_service::settings::Settings>(
            Some(&dir.join("missing.yaml")),
            true
        )
        .is_err()
    );
}

#[test]
fn environment_overrides_the_file_including_the_list_of_watched_dlqs() {
    let env = [
        ("APP_LIFECYCLE__PAYMENT_TIMEOUT_SECS", "7"),
        ("APP_DEAD_LETTERS__WATCHED_GROUPS", "group_a,group_b"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into();
    let settings: order_service::settings::Settings = common::settings::load_with_env(
        Some(&example("order-service.example.yaml")),
        true,
        Some(env),
    )
    .expect("loads");
    assert_eq!(settings.lifecycle.payment_timeout_secs, 7);
    assert_eq!(settings.dead_letters.watched_groups, ["group_a", "group_b"]);
    assert_eq!(settings.mq.stock_topic, "seckill_stock_events");
}
