//! AWS Signature Version 4, verified: the request's claimed signature is recomputed with the
//! secret of its access key and compared in constant time. The canonical request, the string to
//! sign and the HMAC chain are `aws-sigv4`'s (the signer of the AWS SDK for Rust), so the server
//! computes exactly what the SDKs compute; this module only reads the signature's parts out of
//! the request (the `Authorization` header or the presigned query) and applies AWS's time rules:
//! a header-signed request more than 15 minutes away from the server's clock is refused, a
//! presigned one after `X-Amz-Expires` (at most 7 days).
//!
//! Over 700 lines with its unit tests (about 230).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;

use crate::keys::AccessKeys;

/// How far a signed request's time may be from the server's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);
/// Longest validity of a presigned request.
pub const MAX_EXPIRES: u64 = 7 * 24 * 3600;

/// A request as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The path and query exactly as sent.
    pub path_and_query: &'a str,
    /// Every header (names in any case).
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub body: &'a [u8],
}

/// Why a signature is not accepted; each maps to AWS's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// No signature at all.
    #[error("Request is missing Authentication Token")]
    Missing,
    /// A signature with parts missing or malformed.
    #[error("{0}")]
    Incomplete(String),
    /// The access key is not configured.
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    /// The signature is not what the key's secret gives.
    #[error("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")]
    Mismatch,
    /// Too far from the server's clock, or a presigned request past its expiry.
    #[error("{0}")]
    Expired(String),
    /// The credential scope names another region or service than the one asked (AWS answers
    /// `SignatureDoesNotMatch` with what it expected).
    #[error("{0}")]
    Scope(String),
}

impl SigError {
    /// AWS's error code.
    pub fn code(&self) -> &'static str {
        match self {
            SigError::Missing => "MissingAuthenticationToken",
            SigError::Incomplete(_) => "IncompleteSignature",
            SigError::UnknownKey => "InvalidClientTokenId",
            SigError::Mismatch | SigError::Scope(_) => "SignatureDoesNotMatch",
            SigError::Expired(_) => "RequestExpired",
        }
    }

    /// The HTTP status AWS answers with.
    pub fn status(&self) -> u16 {
        match self {
            SigError::Incomplete(_) | SigError::Expired(_) => 400,
            _ => 403,
        }
    }
}

/// The parts of a signature.
#[derive(Debug)]
struct Claim {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
    amz_date: String,
    token: Option<String>,
    /// Presigned: its validity.
    expires: Option<u64>,
}

/// The access key id a request claims to be signed with, without verifying anything (for
/// logs and throttling keys). `None` for unsigned requests.
pub fn claimed_key(req: &SignedRequest<'_>) -> Option<String> {
    claim(req).ok().flatten().map(|c| c.access_key_id)
}

/// The region and service a signature must be scoped to (`sqs`, `sns`, `events`, `iotdata`).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The broker's region.
    pub region: &'a str,
    /// The signing name of the API the request is for.
    pub service: &'a str,
}

/// Verifies the request's signature; the verified access key id on success. `Ok(None)` for a
/// request that carries no signature at all. `scope`: the region and service the credential
/// must name (`None`: any).
pub fn verify(
    req: &SignedRequest<'_>,
    keys: &AccessKeys,
    now: SystemTime,
    scope: Option<Scope<'_>>,
) -> Result<Option<String>, SigError> {
    let Some(c) = claim(req)? else {
        return Ok(None);
    };
    // What the signer needs to exist is checked before it runs (a signed-header set without
    // `host` made it panic): `host` is signed and present, and a header signature signs its
    // date.
    if !c.signed_headers.iter().any(|h| h == "host") || header(req, "host").is_none() {
        return Err(SigError::Incomplete(
            "'Host' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }
    if c.expires.is_none()
        && !c
            .signed_headers
            .iter()
            .any(|h| h == "x-amz-date" || h == "date")
    {
        return Err(SigError::Incomplete(
            "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }
    if c.signed_headers
        .iter()
        .any(|h| h.is_empty() || header(req, h).is_none())
    {
        return Err(SigError::Incomplete(
            "Every SignedHeader must be present in the request.".into(),
        ));
    }
    if let Some(scope) = scope {
        if c.region != scope.region {
            return Err(SigError::Scope(format!(
                "Credential should be scoped to a valid region, not '{}'.",
                c.region.chars().take(64).collect::<String>()
            )));
        }
        if c.service != scope.service {
            return Err(SigError::Scope(format!(
                "Credential should be scoped to correct service: '{}'.",
                scope.service
            )));
        }
    }
    let key = keys.get(&c.access_key_id).ok_or(SigError::UnknownKey)?;
    let time = parse_amz_date(&c.amz_date).ok_or_else(|| {
        SigError::Incomplete("X-Amz-Date is not in ISO 8601 basic format.".into())
    })?;
    if !c.amz_date.starts_with(&c.date) {
        return Err(SigError::Mismatch);
    }
    match c.expires {
        None => {
            let skew = now.duration_since(time).unwrap_or_else(|e| e.duration());
            if skew > MAX_SKEW {
                return Err(SigError::Expired(format!(
                    "Signature expired: {} is now earlier than {} or later than {} (15 minutes either way).",
                    c.amz_date,
                    format_amz_date(now.checked_sub(MAX_SKEW).unwrap_or(UNIX_EPOCH)),
                    format_amz_date(now + MAX_SKEW)
                )));
            }
        }
        Some(expires) => {
            if expires > MAX_EXPIRES {
                return Err(SigError::Incomplete(
                    "X-Amz-Expires must be less than a week (in seconds) that is 604800".into(),
                ));
            }
            if now > time + Duration::from_secs(expires) || time > now + MAX_SKEW {
                return Err(SigError::Expired("Request has expired".into()));
            }
        }
    }

    // A panic in the signer is a refusal, never a dead connection task (or, with
    // `panic = "abort"`, a dead broker: the checks above keep the known case out of it).
    let computed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        compute(req, &c, &key.secret_access_key, time)
    }))
    .map_err(|_| SigError::Incomplete("The signature cannot be verified.".into()))??;
    use subtle::ConstantTimeEq as _;
    if computed.as_bytes().ct_eq(c.signature.as_bytes()).into() {
        Ok(Some(c.access_key_id))
    } else {
        Err(SigError::Mismatch)
    }
}

/// The signature `aws-sigv4` computes for the request as the claim describes it.
fn compute(
    req: &SignedRequest<'_>,
    c: &Claim,
    secret: &str,
    time: SystemTime,
) -> Result<String, SigError> {
    let mut settings = SigningSettings::default();
    // Exactly the headers the client signed are given; nothing is left out.
    settings.excluded_headers = Some(Vec::new());
    let uri;
    if let Some(expires) = c.expires {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(expires));
        // The signer adds the X-Amz-* parameters itself.
        uri = without_presign_params(req.path_and_query);
    } else {
        uri = req.path_and_query.to_string();
    }
    // The signer adds these from the time and the token itself.
    let added_by_signer = ["x-amz-date", "x-amz-security-token", "authorization"];
    let headers: Vec<(&str, &str)> = req
        .headers
        .iter()
        .filter(|(name, _)| {
            let name = name.to_ascii_lowercase();
            c.signed_headers.contains(&name) && !added_by_signer.contains(&name.as_str())
        })
        .copied()
        .collect();
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(
            c.access_key_id.clone(),
            secret.to_string(),
            c.token.clone(),
            None,
            "outpost",
        )
        .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&c.region)
        .name(&c.service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|_| SigError::Incomplete("The credential scope is incomplete.".into()))?
        .into();
    let signable = SignableRequest::new(
        req.method,
        uri.as_str(),
        headers.into_iter(),
        SignableBody::Bytes(req.body),
    )
    .map_err(|_| SigError::Mismatch)?;
    let out = sign(signable, &params).map_err(|_| SigError::Mismatch)?;
    Ok(out.signature().to_string())
}

fn header<'a>(req: &'a SignedRequest<'_>, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

fn query_params(path_and_query: &str) -> Vec<(String, String)> {
    let query = path_and_query.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

const PRESIGN_PARAMS: [&str; 7] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
];

fn without_presign_params(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| {
            let k = p.split_once('=').map_or(*p, |(k, _)| k);
            !PRESIGN_PARAMS.contains(&decode(k).as_str())
        })
        .collect();
    if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// `AKID/20150830/us-east-1/service/aws4_request`.
fn parse_credential(s: &str) -> Result<(String, String, String, String), SigError> {
    let bad = || {
        SigError::Incomplete(format!(
            "Credential should be scoped to a valid region, service and date: {}",
            s.chars().take(200).collect::<String>()
        ))
    };
    let mut parts = s.split('/');
    let (Some(id), Some(date), Some(region), Some(service), Some("aws4_request"), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad());
    };
    if id.is_empty() || date.len() != 8 || region.is_empty() || service.is_empty() {
        return Err(bad());
    }
    Ok((id.into(), date.into(), region.into(), service.into()))
}

fn claim(req: &SignedRequest<'_>) -> Result<Option<Claim>, SigError> {
    if let Some(auth) = header(req, "authorization") {
        let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256") else {
            return Err(SigError::Incomplete(
                "Only AWS4-HMAC-SHA256 signatures are supported.".into(),
            ));
        };
        let mut credential = None;
        let mut signed = None;
        let mut signature = None;
        for part in rest.split(',') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("Credential=") {
                credential = Some(v);
            } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
                signed = Some(v);
            } else if let Some(v) = part.strip_prefix("Signature=") {
                signature = Some(v);
            }
        }
        let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature)
        else {
            return Err(SigError::Incomplete(
                "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.".into(),
            ));
        };
        let (access_key_id, date, region, service) = parse_credential(credential)?;
        let amz_date = header(req, "x-amz-date").ok_or_else(|| {
            SigError::Incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".into())
        })?;
        return Ok(Some(Claim {
            access_key_id,
            date,
            region,
            service,
            signed_headers: signed.split(';').map(str::to_ascii_lowercase).collect(),
            signature: signature.to_string(),
            amz_date: amz_date.to_string(),
            token: header(req, "x-amz-security-token").map(str::to_string),
            expires: None,
        }));
    }
    let params = query_params(req.path_and_query);
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let Some(algorithm) = get("X-Amz-Algorithm") else {
        return Ok(None);
    };
    if algorithm != "AWS4-HMAC-SHA256" {
        return Err(SigError::Incomplete(
            "Only AWS4-HMAC-SHA256 signatures are supported.".into(),
        ));
    }
    let (Some(credential), Some(amz_date), Some(expires), Some(signed), Some(signature)) = (
        get("X-Amz-Credential"),
        get("X-Amz-Date"),
        get("X-Amz-Expires"),
        get("X-Amz-SignedHeaders"),
        get("X-Amz-Signature"),
    ) else {
        return Err(SigError::Incomplete(
            "A presigned request requires X-Amz-Credential, X-Amz-Date, X-Amz-Expires, X-Amz-SignedHeaders and X-Amz-Signature.".into(),
        ));
    };
    let (access_key_id, date, region, service) = parse_credential(credential)?;
    let expires: u64 = expires
        .parse()
        .map_err(|_| SigError::Incomplete("X-Amz-Expires should be a number".into()))?;
    Ok(Some(Claim {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed.split(';').map(str::to_ascii_lowercase).collect(),
        signature: signature.to_string(),
        amz_date: amz_date.to_string(),
        token: get("X-Amz-Security-Token").map(str::to_string),
        expires: Some(expires),
    }))
}

/// `20150830T123600Z` → a time.
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1970..=9999).contains(&y) || ss > 60 {
        return None;
    }
    // A leap second (:60) reads as the first second of the next minute.
    let date = time::Date::from_calendar_date(
        i32::try_from(y).ok()?,
        time::Month::try_from(u8::try_from(m).ok()?).ok()?,
        u8::try_from(d).ok()?,
    )
    .ok()?;
    let clock = time::Time::from_hms(
        u8::try_from(hh).ok()?,
        u8::try_from(mm).ok()?,
        u8::try_from(ss.min(59)).ok()?,
    )
    .ok()?;
    let secs = time::PrimitiveDateTime::new(date, clock)
        .assume_utc()
        .unix_timestamp();
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()? + ss.saturating_sub(59)))
}

/// A time as `20150830T123600Z`.
pub fn format_amz_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp(secs.min(253_402_300_799) as i64) else {
        return "19700101T000000Z".into();
    };
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> AccessKeys {
        AccessKeys::parse(
            "[[keys]]\naccess_key_id = \"AKIDEXAMPLE\"\nsecret_access_key = \"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\"\nidentity = \"example\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn dates_round_trip() {
        let t = parse_amz_date("20150830T123600Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_440_938_160
        );
        assert_eq!(format_amz_date(t), "20150830T123600Z");
        assert!(parse_amz_date("2015-08-30T12:36:00Z").is_none());
        assert!(parse_amz_date("20151330T123600Z").is_none());
    }

    /// AWS's SigV4 test suite's `get-vanilla` request, signed with `keys()`'s secret at
    /// 20150830T123600Z.
    fn get_vanilla() -> SignedRequest<'static> {
        SignedRequest {
        method: "GET",
        path_and_query: "/",
        headers: &[
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
            ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        ],
        body: b"",
    }
    }

    /// A signed-header set without `host` (or a header signature without its date, or naming
    /// a header the request lacks) is refused before the signer runs: it once panicked there.
    #[test]
    fn signed_headers_are_checked_before_signing() {
        let now = parse_amz_date("20150830T123600Z").unwrap();
        let auth = |signed: &str| {
            format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={signed}, Signature=00")
        };
        for signed in [
            "x-amz-date",
            "host",
            "host;x-amz-date;x-missing",
            ";host;x-amz-date",
        ] {
            let a = auth(signed);
            let req = SignedRequest {
                method: "GET",
                path_and_query: "/",
                headers: &[
                    ("Host", "example.amazonaws.com"),
                    ("X-Amz-Date", "20150830T123600Z"),
                    ("Authorization", &a),
                ],
                body: b"",
            };
            assert!(
                matches!(
                    verify(&req, &keys(), now, None),
                    Err(SigError::Incomplete(_))
                ),
                "{signed}"
            );
        }
    }

    /// A credential scoped to another region or service than the one asked is refused, as AWS
    /// refuses it, even with the right secret.
    #[test]
    fn scope_names_this_region_and_service() {
        let now = parse_amz_date("20150830T123600Z").unwrap();
        let get = get_vanilla();
        let scope = |region, service| Some(Scope { region, service });
        assert_eq!(
            verify(&get, &keys(), now, scope("us-east-1", "service")),
            Ok(Some("AKIDEXAMPLE".into()))
        );
        for (region, service) in [("eu-west-1", "service"), ("us-east-1", "sqs")] {
            let got = verify(&get, &keys(), now, scope(region, service));
            assert!(
                matches!(got, Err(SigError::Scope(_))),
                "{region} {service}: {got:?}"
            );
            assert_eq!(got.unwrap_err().code(), "SignatureDoesNotMatch");
        }
    }

    /// AWS's SigV4 test suite, `get-vanilla` and `post-x-www-form-urlencoded`: the published
    /// requests verify with the published secret, and a changed byte does not.
    #[test]
    fn aws_test_suite_vectors() {
        let now = parse_amz_date("20150830T123600Z").unwrap();
        let get = get_vanilla();
        assert_eq!(
            verify(&get, &keys(), now, None),
            Ok(Some("AKIDEXAMPLE".into()))
        );
        let tampered = SignedRequest {
            path_and_query: "/?a=b",
            ..get
        };
        assert_eq!(
            verify(&tampered, &keys(), now, None),
            Err(SigError::Mismatch)
        );
        let post = SignedRequest {
            method: "POST",
            path_and_query: "/",
            headers: &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Host", "example.amazonaws.com"),
                ("X-Amz-Date", "20150830T123600Z"),
                ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
            ],
            body: b"Param1=value1",
        };
        assert_eq!(
            verify(&post, &keys(), now, None),
            Ok(Some("AKIDEXAMPLE".into()))
        );
        let other_body = SignedRequest {
            body: b"Param1=value2",
            ..post
        };
        assert_eq!(
            verify(&other_body, &keys(), now, None),
            Err(SigError::Mismatch)
        );
        // Twenty minutes later the same request is stale.
        let later = now + Duration::from_secs(20 * 60);
        assert!(matches!(
            verify(&get, &keys(), later, None),
            Err(SigError::Expired(_))
        ));
        // Unknown key.
        let unknown = SignedRequest {
            headers: &[
                ("Host", "example.amazonaws.com"),
                ("X-Amz-Date", "20150830T123600Z"),
                ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDUNKNOWN/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"),
            ],
            ..get
        };
        assert_eq!(
            verify(&unknown, &keys(), now, None),
            Err(SigError::UnknownKey)
        );
        let unsigned = SignedRequest {
            headers: &[("Host", "example.amazonaws.com")],
            ..get
        };
        assert_eq!(verify(&unsigned, &keys(), now, None), Ok(None));
    }

    /// A presigned GET made by the signer itself verifies, expires, and fails when altered.
    #[test]
    fn presigned_requests() {
        let now = parse_amz_date("20150830T123600Z").unwrap();
        let identity: aws_smithy_runtime_api::client::identity::Identity =
            aws_credential_types::Credentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                None,
                None,
                "t",
            )
            .into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(300));
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("sqs")
            .time(now)
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let req = SignableRequest::new(
            "GET",
            "http://localhost:9324/?Action=ListQueues",
            [("host", "localhost:9324")].into_iter(),
            SignableBody::Bytes(b""),
        )
        .unwrap();
        let (instructions, _) = sign(req, &params).unwrap().into_parts();
        let mut query = String::from("/?Action=ListQueues");
        for (k, v) in instructions.params() {
            let v: String =
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                    .collect();
            query.push_str(&format!("&{k}={v}"));
        }
        let presigned = SignedRequest {
            method: "GET",
            path_and_query: &query,
            headers: &[("Host", "localhost:9324")],
            body: b"",
        };
        assert_eq!(
            verify(&presigned, &keys(), now + Duration::from_secs(60), None),
            Ok(Some("AKIDEXAMPLE".into()))
        );
        assert!(matches!(
            verify(&presigned, &keys(), now + Duration::from_secs(301), None),
            Err(SigError::Expired(_))
        ));
        let altered = query.replace("ListQueues", "DeleteQueue");
        let altered = SignedRequest {
            path_and_query: &altered,
            ..presigned
        };
        assert_eq!(
            verify(&altered, &keys(), now, None),
            Err(SigError::Mismatch)
        );
    }
}
