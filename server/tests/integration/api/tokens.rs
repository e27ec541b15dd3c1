//! Access tokens that must be refused: expired, forged, `alg: none`, signed with another
//! key, for another audience or issuer, HMAC-signed with the public key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};

use tsunagu_testkit::both_backends;
use tsunagu_testkit::TestApp;

both_backends!(forged_expired_and_foreign_access_tokens_are_refused_with_401);

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

async fn status_with(app: &TestApp, token: &str) -> (StatusCode, Value) {
    let r = app
        .http
        .get(app.url("/api/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn forged_expired_and_foreign_access_tokens_are_refused_with_401(app: TestApp) {
    let good = app.admin.tokens().unwrap().access_token;
    assert_eq!(status_with(&app, &good).await.0, StatusCode::OK);

    let parts: Vec<&str> = good.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let kid = header["kid"].as_str().unwrap().to_owned();

    // The server's real key, as an attacker who stole it would use it: only the claim
    // checks stand between them and the API.
    let pem = std::fs::read_to_string(app.config.data_dir.join("keys/jwt-ed25519.pem")).unwrap();
    let real = SigningKey::from_pkcs8_pem(&pem).unwrap();
    let real_key = EncodingKey::from_ed_der(real.to_pkcs8_der().unwrap().as_bytes());
    let sign_real = |claims: &Value| {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(kid.clone());
        jsonwebtoken::encode(&h, claims, &real_key).unwrap()
    };
    // Sanity: a token we mint with the real key and untouched claims is accepted.
    assert_eq!(
        status_with(&app, &sign_real(&claims)).await.0,
        StatusCode::OK
    );

    let mut cases: Vec<(&str, String)> = Vec::new();

    let mut c = claims.clone();
    c["exp"] = json!(now() - 120);
    c["iat"] = json!(now() - 1000);
    c["nbf"] = json!(now() - 1000);
    cases.push(("expired", sign_real(&c)));

    let mut c = claims.clone();
    c["aud"] = json!("some-other-api");
    cases.push(("wrong audience", sign_real(&c)));

    let mut c = claims.clone();
    c["iss"] = json!("evil");
    cases.push(("wrong issuer", sign_real(&c)));

    let mut c = claims.clone();
    c["nbf"] = json!(now() + 3600);
    cases.push(("not yet valid", sign_real(&c)));

    let mut c = claims.clone();
    c.as_object_mut().unwrap().remove("exp");
    cases.push(("no exp", sign_real(&c)));

    // Payload changed after signing (privilege games with the subject).
    let mut c = claims.clone();
    c["sub"] = json!(uuid::Uuid::now_v7().to_string());
    cases.push((
        "tampered payload",
        format!("{}.{}.{}", parts[0], b64(&c), parts[2]),
    ));

    cases.push((
        "alg none",
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
            parts[1]
        ),
    ));
    cases.push((
        "alg none with signature",
        format!(
            "{}.{}.{}",
            b64(&json!({"alg": "none", "kid": kid})),
            parts[1],
            parts[2]
        ),
    ));

    // Another Ed25519 key claiming our kid.
    let other = SigningKey::generate(&mut rand::rngs::OsRng);
    let other_key = EncodingKey::from_ed_der(other.to_pkcs8_der().unwrap().as_bytes());
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some(kid.clone());
    cases.push((
        "wrong key",
        jsonwebtoken::encode(&h, &claims, &other_key).unwrap(),
    ));

    // HS256 keyed with the public key (algorithm confusion).
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(kid.clone());
    let public = real.verifying_key().to_bytes();
    cases.push((
        "hs256 confusion",
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(&public)).unwrap(),
    ));

    // Unknown kid with the real key.
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some("0000000000000000".into());
    cases.push((
        "unknown kid",
        jsonwebtoken::encode(&h, &claims, &real_key).unwrap(),
    ));

    cases.push(("garbage", "not.a.token".into()));
    cases.push(("empty", String::new()));

    for (name, token) in cases {
        let (status, body) = status_with(&app, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name} must be refused");
        assert_eq!(body["error"]["code"], "unauthenticated", "{name}");
    }

    // No Authorization header, or another scheme.
    let r = app.http.get(app.url("/api/v1/me")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .http
        .get(app.url("/api/v1/me"))
        .header("authorization", format!("Basic {good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A token in the URL is not a credential.
    let r = app
        .http
        .get(app.url(&format!("/api/v1/me?access_token={good}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
