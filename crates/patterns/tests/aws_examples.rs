//! The matcher against the examples of AWS's documentation (SNS "Amazon SNS message filtering"
//! and EventBridge "Content filtering in Amazon EventBridge event patterns"), one row per example:
//! every operator, matching and not matching, and the places where the two grammars differ.

use outpost_patterns::{attributes_to_json, Dialect, Pattern};
use serde_json::{json, Value};

use Dialect::{EventPattern as EB, SnsAttributes as ATTR, SnsBody as BODY};

/// (dialect, pattern, message, expected match)
fn cases() -> Vec<(Dialect, Value, Value, bool)> {
    let order = json!({
        "store": "example_corp",
        "event": "order_placed",
        "customer_interests": ["soccer", "rugby", "hockey"],
        "price_usd": 210.75,
        "source_ip": "10.0.0.42",
        "encrypted": false,
        "details": {"size": "large", "weight": 12}
    });
    vec![
        // Exact values: any element of the policy's array, any element of the message's array.
        (
            BODY,
            json!({"customer_interests": ["rugby", "tennis"]}),
            order.clone(),
            true,
        ),
        (
            BODY,
            json!({"customer_interests": ["tennis"]}),
            order.clone(),
            false,
        ),
        (
            BODY,
            json!({"store": ["example_corp"], "event": ["order_placed"]}),
            order.clone(),
            true,
        ),
        (
            BODY,
            json!({"store": ["example_corp"], "event": ["order_cancelled"]}),
            order.clone(),
            false,
        ),
        // Numbers by value; booleans; exact is case-sensitive.
        (BODY, json!({"price_usd": [210.75]}), order.clone(), true),
        (BODY, json!({"encrypted": [false]}), order.clone(), true),
        (
            BODY,
            json!({"store": ["Example_Corp"]}),
            order.clone(),
            false,
        ),
        // Nested keys (body scope).
        (
            BODY,
            json!({"details": {"size": ["large"]}}),
            order.clone(),
            true,
        ),
        (
            BODY,
            json!({"details": {"size": ["small"]}}),
            order.clone(),
            false,
        ),
        // prefix, suffix, equals-ignore-case.
        (
            BODY,
            json!({"store": [{"prefix": "example"}]}),
            order.clone(),
            true,
        ),
        (
            BODY,
            json!({"store": [{"prefix": "other"}]}),
            order.clone(),
            false,
        ),
        (
            BODY,
            json!({"event": [{"suffix": "_placed"}]}),
            order.clone(),
            true,
        ),
        (
            BODY,
            json!({"event": [{"suffix": "_shipped"}]}),
            order.clone(),
            false,
        ),
        (
            BODY,
            json!({"store": [{"equals-ignore-case": "EXAMPLE_CORP"}]}),
            order.clone(),
            true,
        ),
        // anything-but: values, a single value, prefix, suffix; never matches a missing key.
        (
            BODY,
            json!({"event": [{"anything-but": ["order_cancelled", "order_returned"]}]}),
            order.clone(),
            true,
        ),
        (
            BODY,
            json!({"event": [{"anything-but": "order_placed"}]}),
            order.clone(),
            false,
        ),
        (
            BODY,
            json!({"price_usd": [{"anything-but": [100, 200]}]}),
            order.clone(),
            true,
        ),
        (
            BODY,
            json!({"store": [{"anything-but": {"prefix": "example"}}]}),
            order.clone(),
            false,
        ),
        (
            BODY,
            json!({"store": [{"anything-but": {"suffix": "_corp"}}]}),
            order.clone(),
            false,
        ),
        (
            BODY,
            json!({"store": [{"anything-but": {"suffix": "_inc"}}]}),
            order.clone(),
            true,
        ),
        (
            BODY,
            json!({"missing": [{"anything-but": "x"}]}),
            order.clone(),
            false,
        ),
        // numeric: equality, open and closed ranges; strings are not numbers.
        (
            BODY,
            json!({"price_usd": [{"numeric": ["=", 210.75]}]}),
            order.clone(),
            true,
        ),
        (
            BODY,
            json!({"price_usd": [{"numeric": [">", 0, "<=", 150]}]}),
            order.clone(),
            false,
        ),
        (
            BODY,
            json!({"price_usd": [{"numeric": [">=", 200, "<", 300]}]}),
            order.clone(),
            true,
        ),
        (
            BODY,
            json!({"price_usd": [{"numeric": ["<", 100]}]}),
            order.clone(),
            false,
        ),
        (
            BODY,
            json!({"store": [{"numeric": [">", 0]}]}),
            order.clone(),
            false,
        ),
        // exists.
        (
            BODY,
            json!({"store": [{"exists": true}]}),
            order.clone(),
            true,
        ),
        (
            BODY,
            json!({"coupon": [{"exists": true}]}),
            order.clone(),
            false,
        ),
        (
            BODY,
            json!({"coupon": [{"exists": false}]}),
            order.clone(),
            true,
        ),
        (
            BODY,
            json!({"store": [{"exists": false}]}),
            order.clone(),
            false,
        ),
        // cidr (IP address matching).
        (
            BODY,
            json!({"source_ip": [{"cidr": "10.0.0.0/24"}]}),
            order.clone(),
            true,
        ),
        (
            BODY,
            json!({"source_ip": [{"cidr": "10.0.1.0/24"}]}),
            order.clone(),
            false,
        ),
        // $or, OR within a key and AND across keys.
        (
            BODY,
            json!({"$or": [{"store": ["other"]}, {"price_usd": [{"numeric": [">", 200]}]}]}),
            order.clone(),
            true,
        ),
        (
            BODY,
            json!({"$or": [{"store": ["other"]}, {"price_usd": [{"numeric": [">", 300]}]}]}),
            order.clone(),
            false,
        ),
        (
            BODY,
            json!({"event": ["order_placed"], "$or": [{"store": ["x"]}, {"details": {"weight": [12]}}]}),
            order.clone(),
            true,
        ),
        // SNS: "exists": true needs a non-null, non-empty value.
        (
            BODY,
            json!({"k": [{"exists": true}]}),
            json!({"k": ""}),
            false,
        ),
        (
            BODY,
            json!({"k": [{"exists": true}]}),
            json!({"k": null}),
            false,
        ),
        // null and empty values match themselves.
        (EB, json!({"k": [null]}), json!({"k": null}), true),
        (EB, json!({"k": [""]}), json!({"k": ""}), true),
        (EB, json!({"k": [""]}), json!({"k": "x"}), false),
        // EventBridge: the documented EC2 example, nested detail.
        (
            EB,
            json!({"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"], "detail": {"state": ["running", "stopped"]}}),
            json!({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "detail": {"state": "running", "instance-id": "i-1"}}),
            true,
        ),
        (
            EB,
            json!({"source": ["aws.ec2"], "detail": {"state": ["pending"]}}),
            json!({"source": "aws.ec2", "detail": {"state": "running"}}),
            false,
        ),
        // EventBridge only: wildcard, and the equals-ignore-case forms.
        (
            EB,
            json!({"detail-type": [{"wildcard": "sensors/*/telemetry"}]}),
            json!({"detail-type": "sensors/7/telemetry"}),
            true,
        ),
        (
            EB,
            json!({"detail-type": [{"wildcard": "sensors/*/telemetry"}]}),
            json!({"detail-type": "sensors/7/status"}),
            false,
        ),
        (
            EB,
            json!({"k": [{"prefix": {"equals-ignore-case": "AB"}}]}),
            json!({"k": "abc"}),
            true,
        ),
        (
            EB,
            json!({"k": [{"suffix": {"equals-ignore-case": "BC"}}]}),
            json!({"k": "ABc"}),
            true,
        ),
        (
            EB,
            json!({"k": [{"anything-but": {"wildcard": "a*"}}]}),
            json!({"k": "abc"}),
            false,
        ),
        (
            EB,
            json!({"k": [{"anything-but": {"wildcard": "a*"}}]}),
            json!({"k": "xbc"}),
            true,
        ),
        (
            EB,
            json!({"k": [{"anything-but": {"equals-ignore-case": ["A", "B"]}}]}),
            json!({"k": "a"}),
            false,
        ),
        (
            EB,
            json!({"k": [{"anything-but": {"equals-ignore-case": ["A", "B"]}}]}),
            json!({"k": "c"}),
            true,
        ),
        // EventBridge: exists false on a missing key; numeric telemetry rule of issue 14.
        (
            EB,
            json!({"detail": {"c-count": [{"exists": false}]}}),
            json!({"detail": {}}),
            true,
        ),
        (
            EB,
            json!({"source": ["outpost.mqtt"], "detail-type": [{"wildcard": "sensors/*/telemetry"}], "detail": {"temp": [{"numeric": [">", 50]}]}}),
            json!({"source": "outpost.mqtt", "detail-type": "sensors/a1/telemetry", "detail": {"temp": 51.5}}),
            true,
        ),
        (
            EB,
            json!({"source": ["outpost.mqtt"], "detail-type": [{"wildcard": "sensors/*/telemetry"}], "detail": {"temp": [{"numeric": [">", 50]}]}}),
            json!({"source": "outpost.mqtt", "detail-type": "sensors/a1/telemetry", "detail": {"temp": 49}}),
            false,
        ),
    ]
}

#[test]
fn every_documented_example() {
    for (i, (dialect, pattern, message, expected)) in cases().into_iter().enumerate() {
        let p = Pattern::from_value(&pattern, dialect)
            .unwrap_or_else(|e| panic!("case {i}: {pattern} refused: {e}"));
        assert_eq!(
            p.matches(&message),
            expected,
            "case {i}: {pattern} against {message}"
        );
    }
}

#[test]
fn attribute_policies_match_typed_attributes() {
    let attrs = attributes_to_json([
        ("store", "String", "example_corp"),
        (
            "customer_interests",
            "String.Array",
            "[\"soccer\", \"rugby\"]",
        ),
        ("price_usd", "Number", "210.75"),
        ("blob", "Binary", "AAEC"),
    ]);
    let m = |p: Value| Pattern::from_value(&p, ATTR).unwrap().matches(&attrs);
    assert!(m(json!({"customer_interests": ["rugby"]})));
    assert!(m(json!({"price_usd": [{"numeric": [">=", 100]}]})));
    assert!(
        !m(json!({"price_usd": ["210.75"]})),
        "a Number attribute is not a string"
    );
    assert!(
        !m(json!({"blob": [{"exists": true}]})),
        "binary attributes are not matchable"
    );
    assert!(m(json!({"coupon": [{"exists": false}]})));
    // An empty set of attributes matches no policy that names a key, not even "exists": false.
    let none = attributes_to_json([]);
    let p = Pattern::from_value(&json!({"coupon": [{"exists": false}]}), ATTR).unwrap();
    assert!(!p.matches(&none));
}

#[test]
fn invalid_patterns_are_refused_with_a_reason() {
    let refused = |d: Dialect, p: Value, needle: &str| {
        let e = Pattern::from_value(&p, d).expect_err(&p.to_string());
        assert!(
            e.reason.contains(needle),
            "{p}: {} lacks {needle:?}",
            e.reason
        );
    };
    refused(
        BODY,
        json!({"a": [1], "b": [1], "c": [1], "d": [1], "e": [1], "f": [1]}),
        "more than 5 keys",
    );
    let many: Vec<Value> = (0..13).map(Value::from).collect();
    refused(BODY, json!({"a": many.clone(), "b": many}), "too complex");
    refused(ATTR, json!({"a": {"b": ["x"]}}), "nested");
    refused(
        BODY,
        json!({"a": [{"wildcard": "x*"}]}),
        "Unrecognized match type wildcard",
    );
    refused(
        EB,
        json!({"a": [{"wildcard": "x**"}]}),
        "Consecutive wildcard",
    );
    refused(
        BODY,
        json!({"a": [{"numeric": ["<", 5, ">", 1]}]}),
        "lower bound",
    );
    refused(
        BODY,
        json!({"a": [{"numeric": [">", 5, "<", 1]}]}),
        "below its top",
    );
    refused(BODY, json!({"a": [{"numeric": [">", 2e9]}]}), "between");
    assert!(
        Pattern::from_value(&json!({"a": [{"numeric": [">", 2e9]}]}), EB).is_ok(),
        "EventBridge's numeric range is wider than SNS's"
    );
    refused(
        BODY,
        json!({"a": [{"cidr": "10.0.0.0/33"}]}),
        "Malformed CIDR",
    );
    refused(BODY, json!({"a": []}), "Empty arrays");
    refused(BODY, json!({"a": "x"}), "must be an array or an object");
    refused(BODY, json!({"a": [{"prefix": 1}]}), "must be a string");
    refused(BODY, json!({"a": [{"exists": "yes"}]}), "true or false");
    refused(BODY, json!({"$or": [{"a": ["x"]}]}), "at least two");
    refused(
        BODY,
        json!({"a": [{"prefix": "x", "suffix": "y"}]}),
        "exactly one operator",
    );
    refused(BODY, json!(["x"]), "JSON object");
    let e = Pattern::parse("{\"a\": [", BODY).unwrap_err();
    assert!(e
        .aws_message(BODY)
        .starts_with("Invalid parameter: FilterPolicy: "));
    assert!(e
        .aws_message(EB)
        .starts_with("Event pattern is not valid. Reason: "));
}

#[test]
fn depth_is_bounded_without_recursing_on_input() {
    // Deeper than MAX_DEPTH: refused. Far deeper than serde_json's own limit: refused by the parser
    // before anything walks it.
    let mut deep = String::from("[\"x\"]");
    for _ in 0..20 {
        deep = format!("{{\"a\": {deep}}}");
    }
    assert!(Pattern::parse(&deep, BODY)
        .unwrap_err()
        .reason
        .contains("nested"));
    let abyss = "{\"a\":".repeat(100_000);
    assert!(Pattern::parse(&abyss, EB).is_err());
    // A deep message is only walked as deep as the pattern.
    let mut deep = json!("leaf");
    for _ in 0..10_000 {
        // Built by hand: `json!` would serialize (recursively copy) the value it embeds.
        let mut m = serde_json::Map::new();
        m.insert("a".into(), deep);
        deep = Value::Object(m);
    }
    let mut inner = serde_json::Map::new();
    inner.insert("b".into(), json!("x"));
    inner.insert("a".into(), deep);
    let mut outer = serde_json::Map::new();
    outer.insert("a".into(), Value::Object(inner));
    let msg = Value::Object(outer);
    let yes = Pattern::from_value(&json!({"a": {"b": ["x"]}}), EB).unwrap();
    let no = Pattern::from_value(&json!({"a": {"b": ["y"]}}), EB).unwrap();
    assert!(yes.matches(&msg));
    assert!(!no.matches(&msg));
    std::mem::forget(msg); // dropping a 10,000-deep Value recurses in serde_json itself
}
