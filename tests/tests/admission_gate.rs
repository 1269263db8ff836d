//! The admission and release scripts' answers, on real Redis (no broker needed).

use std::time::Duration;

use common::domain::ProductId;
use order_service::admission::{Admission, AdmissionGate, Keys};
use seckill_tests::{TestEnv, order_message};

async fn gate(env: &TestEnv) -> AdmissionGate {
    let redis = common::redis_link::RedisLink::connect(&common::settings::RedisSettings::default())
        .await
        .expect("redis");
    let gate = AdmissionGate::new(
        redis,
        Keys::new(&env.redis_prefix),
        Duration::from_millis(50),
    );
    let mut redis = gate.redis();
    redis::cmd("SET")
        .arg(gate.keys().ready())
        .arg("test")
        .query_async::<()>(&mut redis)
        .await
        .unwrap();
    gate
}

#[tokio::test]
async fn admission_answers_each_case() {
    let env = TestEnv::new();
    let gate = gate(&env).await;
    let product = ProductId::parse(1).unwrap();
    assert_eq!(
        gate.admit(&order_message(1, 1, 1), None).await.unwrap(),
        Admission::NotOnSale
    );

    gate.open_sale(product, 3, 1, Default::default())
        .await
        .unwrap();
    let first = order_message(1, 1, 2);
    assert_eq!(
        gate.admit(&first, None).await.unwrap(),
        Admission::Admitted { remaining: 1 }
    );
    assert_eq!(
        gate.admit(&first, None).await.unwrap(),
        Admission::Admitted { remaining: 1 },
        "same tx_no: no second reservation"
    );
    assert_eq!(
        gate.admit(&order_message(1, 1, 1), None).await.unwrap(),
        Admission::LimitExceeded
    );
    assert_eq!(
        gate.admit(&order_message(2, 1, 2), None).await.unwrap(),
        Admission::SoldOut,
        "2 wanted, 1 left"
    );
    assert_eq!(
        gate.admit(&order_message(2, 1, 1), None).await.unwrap(),
        Admission::Admitted { remaining: 0 }
    );
    assert_eq!(
        gate.admit(&order_message(3, 1, 1), None).await.unwrap(),
        Admission::SoldOut
    );
    assert!(
        gate.sold_out.is_sold_out(product, Duration::from_secs(1)),
        "remembered locally"
    );

    env.flush_redis().await;
    tokio::time::sleep(Duration::from_millis(60)).await; // past the local sold-out memory
    assert_eq!(
        gate.admit(&order_message(4, 1, 1), None).await.unwrap(),
        Admission::NotReady
    );
}

#[tokio::test]
async fn a_reservation_goes_back_exactly_once() {
    let env = TestEnv::new();
    let gate = gate(&env).await;
    let product = ProductId::parse(1).unwrap();
    gate.open_sale(product, 1, 1, Default::default())
        .await
        .unwrap();
    let held = order_message(1, 1, 1);
    assert_eq!(
        gate.admit(&held, None).await.unwrap(),
        Admission::Admitted { remaining: 0 }
    );

    assert_eq!(gate.release(product, &held.tx_no).await.unwrap(), 1);
    assert_eq!(
        gate.release(product, &held.tx_no).await.unwrap(),
        0,
        "second release is a no-op"
    );
    assert_eq!(gate.sale_view(product).await.unwrap(), Some((1, 1, 0)));
    // The buyer may buy again.
    assert_eq!(
        gate.admit(&order_message(1, 1, 1), None).await.unwrap(),
        Admission::Admitted { remaining: 0 }
    );
}
