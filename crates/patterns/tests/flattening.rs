//! How AWS's matcher (event-ruler, behind EventBridge and SNS payload filtering) reads a message:
//! keys are dot-joined paths on both sides, arrays of objects offer the fields of each object and
//! keep fields of one element together, `anything-but` matches what is not a string, and the
//! limits AWS puts on patterns. Each example is ours, written from AWS's documentation of the
//! behaviour.

use outpost_patterns::{Dialect, Pattern};
use serde_json::{json, Value};

use Dialect::{EventPattern as EB, SnsBody as BODY};

fn matches(d: Dialect, pattern: Value, message: Value) -> bool {
    Pattern::from_value(&pattern, d)
        .unwrap_or_else(|e| panic!("{pattern} refused: {e}"))
        .matches(&message)
}

fn refused(d: Dialect, pattern: Value) -> bool {
    Pattern::from_value(&pattern, d).is_err()
}

#[test]
fn dotted_keys_and_nested_objects_name_the_same_field() {
    let nested = json!({"detail": {"order": {"state": "shipped"}}});
    let dotted = json!({"detail": {"order.state": "shipped"}});
    for message in [&nested, &dotted] {
        for d in [EB, BODY] {
            assert!(matches(
                d,
                json!({"detail": {"order": {"state": ["shipped"]}}}),
                message.clone()
            ));
            assert!(matches(
                d,
                json!({"detail": {"order.state": ["shipped"]}}),
                message.clone()
            ));
            assert!(!matches(
                d,
                json!({"detail": {"order.state": ["open"]}}),
                message.clone()
            ));
        }
    }
}

#[test]
fn fields_inside_arrays_of_objects_are_searched() {
    let event = json!({"detail": {"items": [
        {"sku": "a-1", "qty": 2},
        {"sku": "b-7", "qty": 9}
    ]}});
    assert!(matches(
        EB,
        json!({"detail": {"items": {"sku": ["b-7"]}}}),
        event.clone()
    ));
    assert!(matches(
        EB,
        json!({"detail": {"items": {"qty": [{"numeric": [">", 5]}]}}}),
        event.clone()
    ));
    assert!(!matches(
        EB,
        json!({"detail": {"items": {"sku": ["c-0"]}}}),
        event.clone()
    ));
    // Two fields must hold in the same element.
    assert!(matches(
        EB,
        json!({"detail": {"items": {"sku": ["b-7"], "qty": [9]}}}),
        event.clone()
    ));
    assert!(!matches(
        EB,
        json!({"detail": {"items": {"sku": ["a-1"], "qty": [9]}}}),
        event.clone()
    ));
    // An element without the field satisfies `exists: false` for that element.
    let people = json!({"detail": {"people": [
        {"name": "Ana", "badge": 7},
        {"name": "Bo"}
    ]}});
    assert!(matches(
        EB,
        json!({"detail": {"people": {"name": ["Bo"], "badge": [{"exists": false}]}}}),
        people.clone()
    ));
    assert!(!matches(
        EB,
        json!({"detail": {"people": {"name": ["Ana"], "badge": [{"exists": false}]}}}),
        people
    ));
}

#[test]
fn exists_needs_a_leaf_value() {
    let event = json!({"resources": [], "detail": {"tags": [], "owner": null}});
    assert!(!matches(
        EB,
        json!({"resources": [{"exists": true}]}),
        event.clone()
    ));
    assert!(matches(
        EB,
        json!({"resources": [{"exists": false}]}),
        event.clone()
    ));
    assert!(!matches(
        EB,
        json!({"detail": {"tags": [{"exists": true}]}}),
        event.clone()
    ));
    assert!(matches(
        EB,
        json!({"detail": {"owner": [{"exists": true}]}}),
        event
    ));
}

#[test]
fn anything_but_lists_of_prefixes_suffixes_and_wildcards() {
    let event = |file: &str| json!({"detail": {"file": file}});
    let prefixes = json!({"detail": {"file": [{"anything-but": {"prefix": ["tmp/", "cache/"]}}]}});
    assert!(matches(EB, prefixes.clone(), event("data/x.csv")));
    assert!(!matches(EB, prefixes.clone(), event("cache/x.csv")));
    assert!(matches(BODY, prefixes, event("data/x.csv")));
    let suffixes = json!({"detail": {"file": [{"anything-but": {"suffix": [".tmp", ".bak"]}}]}});
    assert!(!matches(EB, suffixes.clone(), event("a.bak")));
    assert!(matches(EB, suffixes, event("a.csv")));
    let wildcards =
        json!({"detail": {"file": [{"anything-but": {"wildcard": ["*/tmp/*", "*.log"]}}]}});
    assert!(!matches(EB, wildcards.clone(), event("var/tmp/x")));
    assert!(!matches(EB, wildcards.clone(), event("app.log")));
    assert!(matches(EB, wildcards, event("var/data/x")));
}

#[test]
fn anything_but_matches_values_that_are_not_strings() {
    for value in [json!(null), json!(42)] {
        let event = json!({"detail": {"state": value}});
        for test in [
            json!({"prefix": "init"}),
            json!({"suffix": "ed"}),
            json!({"wildcard": "*ing"}),
            json!({"equals-ignore-case": ["stopped"]}),
        ] {
            assert!(
                matches(
                    EB,
                    json!({"detail": {"state": [{"anything-but": test.clone()}]}}),
                    event.clone()
                ),
                "{test} against {event}"
            );
        }
    }
    // A missing field is still no match.
    assert!(!matches(
        EB,
        json!({"detail": {"state": [{"anything-but": {"prefix": "init"}}]}}),
        json!({"detail": {}})
    ));
}

#[test]
fn patterns_aws_refuses() {
    // An empty prefix or suffix inside anything-but (an empty wildcard is accepted).
    assert!(refused(
        EB,
        json!({"a": [{"anything-but": {"prefix": ""}}]})
    ));
    assert!(refused(
        EB,
        json!({"a": [{"anything-but": {"suffix": ""}}]})
    ));
    assert!(!refused(
        EB,
        json!({"a": [{"anything-but": {"wildcard": ""}}]})
    ));
    // A list mixing strings and numbers.
    assert!(refused(EB, json!({"a": [{"anything-but": ["x", 1]}]})));
    assert!(!refused(EB, json!({"a": [{"anything-but": [1, 2]}]})));
    // An empty object.
    assert!(refused(EB, json!({"a": {}})));
    // A wildcard with too many stars.
    assert!(refused(
        EB,
        json!({"arn": [{"wildcard": "*:*:*:*:*:event-bus/*"}]})
    ));
    assert!(!refused(
        EB,
        json!({"arn": [{"wildcard": "arn:*:event-bus/*"}]})
    ));
}

/// SNS counts a key's values times its nesting level, multiplies across keys, and adds up the
/// alternatives of `$or`; past 150 the policy is refused.
#[test]
fn sns_combinations_count_nesting_and_alternatives() {
    // The documentation's example: (4 × 3) × (3 × 2) × (3 × 1) = 216.
    let nested = json!({
        "key_a": {"key_b": {"key_c": ["v1", "v2", "v3", "v4"]}},
        "key_d": {"key_e": ["v1", "v2", "v3"]},
        "key_f": ["v1", "v2", "v3"]
    });
    assert!(refused(BODY, nested));
    assert!(!refused(
        BODY,
        json!({"key_a": {"key_b": ["v1", "v2"]}, "key_f": ["v1", "v2", "v3"]})
    ));
    // (3 + 2) × 2·2 × (1·2 + 3·2) = 160.
    let ors = json!({
        "$or": [{"m": ["a", "b", "c"]}, {"n": ["d", "e"]}],
        "detail": {"scope": ["s", "t"], "$or": [{"source": ["x"]}, {"type": ["p", "q", "r"]}]}
    });
    assert!(refused(BODY, ors));
}

/// `names` says whether every alternative constrains a top-level field (the rules engine lets
/// MQTT's `$` topics reach only patterns that name their `detail-type`).
#[test]
fn a_pattern_names_its_fields() {
    let p = |json: &str| Pattern::parse(json, EB).expect(json);
    assert!(p(r#"{"detail-type":[{"prefix":"$aws/"}]}"#).names("detail-type"));
    assert!(!p(r#"{"source":["outpost.mqtt"]}"#).names("detail-type"));
    assert!(
        !p(r#"{"detail":{"detail-type":["x"]}}"#).names("detail-type"),
        "nested is another field"
    );
    assert!(!p(r#"{"$or":[{"detail-type":["a"]},{"source":["b"]}]}"#).names("detail-type"));
    assert!(
        p(r#"{"$or":[{"detail-type":["a"]},{"detail-type":["b"],"source":["c"]}]}"#)
            .names("detail-type")
    );
}
