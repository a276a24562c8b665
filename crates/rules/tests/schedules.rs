//! Scheduled rules on the real engines (store, queues, topics, rules) with an injected clock:
//! which ticks fire, what the targets receive, and what a restart keeps. No test sleeps for a
//! tick; the clock is moved and the scheduler asked to run.

mod common;

use std::collections::BTreeMap;

use common::{open, put_schedule, queue_arn, ACCOUNT, MINUTE, REGION, T0};
use outpost_rules::{EventsError, PutEntry};
use serde_json::{json, Value};

fn time_of(ms: u64) -> String {
    outpost_rules::event_time(ms)
}

#[tokio::test]
async fn a_rate_fires_each_period_from_when_it_was_set_with_the_scheduled_event_and_input() {
    let dir = tempfile::tempdir().expect("dir");
    let e = open(dir.path(), T0 + 17_000);
    e.queue("whole").await;
    e.queue("input").await;
    let arn = e
        .rule(
            "every-5",
            "rate(5 minutes)",
            vec![
                json!({"Id": "whole", "Arn": queue_arn("whole")}),
                json!({"Id": "input", "Arn": queue_arn("input"), "Input": "{\"job\":\"compact\"}"}),
            ],
        )
        .await;
    let first = T0 + 17_000 + 5 * MINUTE;
    assert_eq!(e.run_at(first - 1).await, Some(first), "the next tick");
    assert!(e.drain("whole").await.is_empty(), "nothing before the tick");

    assert_eq!(e.run_at(first).await, Some(first + 5 * MINUTE));
    let got = e.drain("whole").await;
    assert_eq!(got.len(), 1, "one event per tick: {got:?}");
    let event: Value = serde_json::from_str(&got[0]).expect("JSON");
    assert_eq!(event["source"], "aws.events");
    assert_eq!(event["detail-type"], "Scheduled Event");
    assert_eq!(event["resources"], json!([arn]));
    assert_eq!(event["detail"], json!({}));
    assert_eq!(event["time"], time_of(first));
    assert_eq!(event["account"], ACCOUNT);
    assert_eq!(event["region"], REGION);
    assert_eq!(e.drain("input").await, ["{\"job\":\"compact\"}"]);

    // Asked again within the same period: nothing more.
    e.run_at(first + MINUTE).await;
    assert!(e.drain("whole").await.is_empty());
    e.run_at(first + 5 * MINUTE + 1).await;
    assert_eq!(e.drain("whole").await.len(), 1);
}

#[tokio::test]
async fn ticks_missed_while_stopped_fire_once_at_start_and_fired_ticks_survive_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let e = open(dir.path(), T0);
        e.queue("q").await;
        e.rule(
            "minutely",
            "rate(1 minute)",
            vec![json!({"Id": "q", "Arn": queue_arn("q")})],
        )
        .await;
        e.run_at(T0 + MINUTE).await;
        assert_eq!(e.drain("q").await.len(), 1);
    }
    // Nine ticks pass while the broker is down.
    let e = open(dir.path(), T0 + 10 * MINUTE + 30_000);
    assert_eq!(
        e.events.run_schedules().await,
        Some(T0 + 11 * MINUTE),
        "the tick after the catch-up"
    );
    let got = e.drain("q").await;
    assert_eq!(got.len(), 1, "missed ticks fire once: {got:?}");
    let event: Value = serde_json::from_str(&got[0]).expect("JSON");
    assert_eq!(
        event["time"],
        time_of(T0 + 10 * MINUTE),
        "as the latest of them"
    );
    drop(e);
    // The catch-up is not repeated by another restart within the same minute.
    let e = open(dir.path(), T0 + 10 * MINUTE + 40_000);
    e.events.run_schedules().await;
    assert!(e.drain("q").await.is_empty());
}

#[tokio::test]
async fn cron_rules_fire_on_their_minutes_and_not_for_ticks_passed_while_disabled() {
    let dir = tempfile::tempdir().expect("dir");
    let e = open(dir.path(), T0);
    e.queue("q").await;
    e.rule(
        "quarterly",
        "cron(0/15 * * * ? *)",
        vec![json!({"Id": "q", "Arn": queue_arn("q")})],
    )
    .await;
    assert_eq!(e.run_at(T0).await, Some(T0 + 13 * MINUTE), "10:15");
    e.events
        .set_rule_state("quarterly", None, false)
        .await
        .expect("disable");
    e.run_at(T0 + 14 * MINUTE).await;
    assert_eq!(
        e.run_at(T0 + 16 * MINUTE).await,
        None,
        "no enabled schedule"
    );
    assert!(
        e.drain("q").await.is_empty(),
        "a disabled rule does not fire"
    );
    e.events
        .set_rule_state("quarterly", None, true)
        .await
        .expect("enable");
    assert_eq!(e.run_at(T0 + 18 * MINUTE).await, Some(T0 + 28 * MINUTE));
    assert!(
        e.drain("q").await.is_empty(),
        "10:15 passed while disabled: not owed"
    );
    e.run_at(T0 + 28 * MINUTE).await;
    let got = e.drain("q").await;
    assert_eq!(got.len(), 1);
    let event: Value = serde_json::from_str(&got[0]).expect("JSON");
    assert_eq!(event["time"], time_of(T0 + 28 * MINUTE), "10:30");

    // A new expression starts anew; the rule's description says what it is.
    put_schedule(&e.events, "quarterly", None, "cron(0 12 ? * MON-FRI *)")
        .await
        .expect("changed");
    let rule = e.events.describe_rule("quarterly", None).expect("rule");
    assert_eq!(
        rule.schedule_expression.as_deref(),
        Some("cron(0 12 ? * MON-FRI *)")
    );
    assert_eq!(rule.event_pattern, None);
    // 2026-12-04 is a Friday: 12:00 that day.
    assert_eq!(e.run_at(T0 + 29 * MINUTE).await, Some(T0 + 118 * MINUTE));
}

#[tokio::test]
async fn failed_deliveries_follow_the_targets_retry_policy_to_its_dead_letter_queue() {
    let dir = tempfile::tempdir().expect("dir");
    let e = open(dir.path(), T0);
    e.queue("gone").await;
    e.queue("dlq").await;
    e.rule(
        "doomed",
        "rate(1 minute)",
        vec![json!({
            "Id": "gone",
            "Arn": queue_arn("gone"),
            "RetryPolicy": {"MaximumRetryAttempts": 0},
            "DeadLetterConfig": {"Arn": queue_arn("dlq")},
        })],
    )
    .await;
    e.queues.delete_queue("gone").await.expect("delete");
    e.run_at(T0 + MINUTE).await;
    let dead = e.drain("dlq").await;
    assert_eq!(dead.len(), 1, "dead-lettered: {dead:?}");
    let event: Value = serde_json::from_str(&dead[0]).expect("JSON");
    assert_eq!(event["detail-type"], "Scheduled Event");
}

#[tokio::test]
async fn schedules_are_refused_where_aws_refuses_them_and_match_no_events() {
    let dir = tempfile::tempdir().expect("dir");
    let e = open(dir.path(), T0);
    for bad in ["rate(1 minutes)", "cron(0 12 * * * *)", "every 5 minutes"] {
        match put_schedule(&e.events, "bad", None, bad).await {
            Err(EventsError::Validation(m)) => {
                assert_eq!(m, "Parameter ScheduleExpression is not valid.")
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    e.events
        .create_event_bus("custom", None, BTreeMap::new())
        .await
        .expect("bus");
    match put_schedule(&e.events, "elsewhere", Some("custom"), "rate(5 minutes)").await {
        Err(EventsError::Validation(m)) => assert_eq!(
            m,
            "ScheduleExpression is supported only on the default event bus."
        ),
        other => panic!("{other:?}"),
    }
    // A rule with only a schedule matches no event put on the bus.
    e.queue("q").await;
    e.rule(
        "timer",
        "rate(1 hour)",
        vec![json!({"Id": "q", "Arn": queue_arn("q")})],
    )
    .await;
    let results = e
        .events
        .put_events(vec![PutEntry {
            source: Some("app".into()),
            detail_type: Some("Scheduled Event".into()),
            detail: Some("{}".into()),
            ..PutEntry::default()
        }])
        .await
        .expect("put");
    assert_eq!(results.len(), 1);
    assert!(e.drain("q").await.is_empty());
}
