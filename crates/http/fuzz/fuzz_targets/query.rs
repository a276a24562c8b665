//! Fuzzes the query-protocol parser (SQS and SNS flavors) with any form body: it must never panic or recurse, must
//! refuse too many or too deep parameters, and must accept everything within the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_http::query::{
    params_to_json, params_to_json_as, Flavor, QueryError, MAX_KEY_DEPTH, MAX_PARAMS,
};

fuzz_target!(|data: &[u8]| {
    // Short inputs are taken as they are; a leading 0xff byte makes the rest a deep key, so the
    // fuzzer reaches depths it would rarely build byte by byte.
    let body: Vec<u8> = match data.split_first() {
        Some((0xff, rest)) => {
            let mut b = b"Attribute.1".to_vec();
            for _ in 0..rest.len() * 50 {
                b.extend_from_slice(b".a");
            }
            b.extend_from_slice(b"=v&");
            b.extend_from_slice(rest);
            b
        }
        _ => data.to_vec(),
    };
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&body)
        .take(MAX_PARAMS + 1)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let too_many = pairs.len() > MAX_PARAMS;
    let too_deep = pairs.iter().any(|(k, _)| k.split('.').count() > MAX_KEY_DEPTH);
    // SQS's flattened names and SNS's wrapped ones (`member.N`, `entry.N`) go through the same
    // limits.
    for result in [
        params_to_json(pairs.clone()),
        params_to_json_as(pairs, Flavor::Sns),
    ] {
        match result {
            Ok(v) => {
                assert!(!too_many && !too_deep);
                assert!(v.is_object());
            }
            Err(QueryError::TooMany) => assert!(too_many),
            Err(QueryError::TooDeep) => assert!(too_deep && !too_many),
        }
    }
});
