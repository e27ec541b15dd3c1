//! Receiving Tsunagu webhooks: checking a request's Standard Webhooks signature.
//!
//! ```
//! use std::time::Duration;
//! use tsunagu_client::webhooks::{sign, verify, Headers};
//!
//! let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
//! let body = br#"{"id":"e1","type":"webhook.test","created_at":"2026-12-01T00:00:00.000Z","region_id":"r","data":{}}"#;
//! let now = 1_764_547_200;
//! let signature = sign(secret, "e1", now, body).unwrap();
//! let headers = Headers { id: "e1", timestamp: &now.to_string(), signature: &signature };
//! let event = verify(secret, &headers, body, Duration::from_secs(300), now).unwrap();
//! assert_eq!(event.event_type, "webhook.test");
//! ```
//!
//! Verify before parsing anything, against the exact bytes received; then deduplicate
//! by `event.id` (the `webhook-id` header): delivery is at least once.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tsunagu_protocol::webhooks::{
    WebhookEvent, WEBHOOK_ID_HEADER, WEBHOOK_SECRET_PREFIX, WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TIMESTAMP_HEADER,
};

/// Why a webhook request is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the secret is not whsec_<base64>")]
    BadSecret,
    #[error("a webhook-id, webhook-timestamp or webhook-signature header is missing")]
    MissingHeader,
    #[error("webhook-timestamp is not a Unix time in seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is outside the tolerance (replayed or clock skew)")]
    Expired,
    #[error("no signature matches")]
    BadSignature,
    #[error("the body is not a webhook event: {0}")]
    BadBody(String),
}

/// The three headers of a request, however the web framework hands them over.
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a> {
    pub id: &'a str,
    pub timestamp: &'a str,
    pub signature: &'a str,
}

impl<'a> Headers<'a> {
    /// Takes them from an `http::HeaderMap` (axum, reqwest, hyper).
    pub fn from_map(map: &'a reqwest::header::HeaderMap) -> Result<Self, VerifyError> {
        let get = |name: &str| {
            map.get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or(VerifyError::MissingHeader)
        };
        Ok(Headers {
            id: get(WEBHOOK_ID_HEADER)?,
            timestamp: get(WEBHOOK_TIMESTAMP_HEADER)?,
            signature: get(WEBHOOK_SIGNATURE_HEADER)?,
        })
    }
}

fn key(secret: &str) -> Result<Vec<u8>, VerifyError> {
    let b64 = secret.strip_prefix(WEBHOOK_SECRET_PREFIX).unwrap_or(secret);
    STANDARD.decode(b64).map_err(|_| VerifyError::BadSecret)
}

fn mac(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` value the server sends (`v1,<base64>`), for tests and for
/// checking a receiver.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, VerifyError> {
    let tag = mac(&key(secret)?, id, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    Ok(format!("v1,{}", STANDARD.encode(tag)))
}

/// Checks a webhook request and returns its event: the timestamp within `tolerance` of
/// `now` (Unix seconds), then any `v1,` signature of the space-separated list matching
/// (compared in constant time), then the body parsed.
pub fn verify(
    secret: &str,
    headers: &Headers<'_>,
    body: &[u8],
    tolerance: Duration,
    now: i64,
) -> Result<WebhookEvent, VerifyError> {
    let key = key(secret)?;
    let timestamp: i64 = headers
        .timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    if now.abs_diff(timestamp) > tolerance.as_secs() {
        return Err(VerifyError::Expired);
    }
    let expected = mac(&key, headers.id, headers.timestamp.trim(), body);
    let matched = headers.signature.split(' ').any(|candidate| {
        candidate
            .strip_prefix("v1,")
            .and_then(|b64| STANDARD.decode(b64).ok())
            .is_some_and(|tag| expected.clone().verify_slice(&tag).is_ok())
    });
    if !matched {
        return Err(VerifyError::BadSignature);
    }
    serde_json::from_slice(body).map_err(|e| VerifyError::BadBody(e.to_string()))
}

/// [`verify`] against the system clock.
pub fn verify_now(
    secret: &str,
    headers: &Headers<'_>,
    body: &[u8],
    tolerance: Duration,
) -> Result<WebhookEvent, VerifyError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    verify(secret, headers, body, tolerance, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const BODY: &[u8] = br#"{"id":"msg_1","type":"message.created","created_at":"2026-12-01T00:00:00.000Z","region_id":"r1","data":{"message":{}}}"#;

    fn headers<'a>(ts: &'a str, sig: &'a str) -> Headers<'a> {
        Headers {
            id: "msg_1",
            timestamp: ts,
            signature: sig,
        }
    }

    #[test]
    fn the_specifications_example_verifies() {
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let h = Headers {
            id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
            timestamp: "1614265330",
            signature: sig,
        };
        let body = br#"{"test": 2432232314}"#;
        // The body is not one of ours, but the signature check passes first.
        let err = verify(SECRET, &h, body, Duration::from_secs(300), 1614265330).unwrap_err();
        assert!(matches!(err, VerifyError::BadBody(_)), "{err:?}");
    }

    #[test]
    fn a_signed_event_verifies_and_parses() {
        let sig = sign(SECRET, "msg_1", 1_000, BODY).unwrap();
        let event = verify(
            SECRET,
            &headers("1000", &sig),
            BODY,
            Duration::from_secs(300),
            1_100,
        )
        .unwrap();
        assert_eq!(event.id, "msg_1");
        assert_eq!(event.event_type, "message.created");
    }

    #[test]
    fn a_changed_body_id_or_secret_is_refused() {
        let sig = sign(SECRET, "msg_1", 1_000, BODY).unwrap();
        let tol = Duration::from_secs(300);
        let mut body = BODY.to_vec();
        body[10] ^= 1;
        assert_eq!(
            verify(SECRET, &headers("1000", &sig), &body, tol, 1_000).unwrap_err(),
            VerifyError::BadSignature
        );
        let other = Headers {
            id: "msg_2",
            ..headers("1000", &sig)
        };
        assert_eq!(
            verify(SECRET, &other, BODY, tol, 1_000).unwrap_err(),
            VerifyError::BadSignature
        );
        let wrong = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(
            verify(wrong, &headers("1000", &sig), BODY, tol, 1_000).unwrap_err(),
            VerifyError::BadSignature
        );
    }

    #[test]
    fn an_old_or_future_timestamp_is_refused() {
        let sig = sign(SECRET, "msg_1", 1_000, BODY).unwrap();
        let tol = Duration::from_secs(300);
        assert_eq!(
            verify(SECRET, &headers("1000", &sig), BODY, tol, 1_301).unwrap_err(),
            VerifyError::Expired
        );
        assert_eq!(
            verify(SECRET, &headers("1000", &sig), BODY, tol, 699).unwrap_err(),
            VerifyError::Expired
        );
        assert_eq!(
            verify(SECRET, &headers("soon", &sig), BODY, tol, 1_000).unwrap_err(),
            VerifyError::BadTimestamp
        );
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let sig = sign(SECRET, "msg_1", 1_000, BODY).unwrap();
        let list = format!("v1,AAAA {sig} v2,ignored");
        assert!(verify(
            SECRET,
            &headers("1000", &list),
            BODY,
            Duration::from_secs(5),
            1_000
        )
        .is_ok());
    }
}

/// Managing webhooks (region administrators): `/api/v1/admin/api-clients/{id}/webhooks…`.
mod admin {
    use reqwest::Method;
    use tsunagu_protocol::ids::{ApiClientId, WebhookDeliveryId, WebhookId};
    use tsunagu_protocol::webhooks::{
        CreateWebhook, CreatedWebhook, DeliveryStatus, UpdateWebhook, Webhook, WebhookDelivery,
        WebhookDeliveryList, WebhookList,
    };

    use crate::{Client, Result};

    fn base(client_id: ApiClientId) -> String {
        format!("api/v1/admin/api-clients/{client_id}/webhooks")
    }

    impl Client {
        /// Adds a webhook; the answer's `secret` is shown this once.
        pub async fn create_webhook(
            &self,
            client_id: ApiClientId,
            req: &CreateWebhook,
        ) -> Result<CreatedWebhook> {
            self.authed(Method::POST, &base(client_id), Some(req)).await
        }

        pub async fn list_webhooks(&self, client_id: ApiClientId) -> Result<WebhookList> {
            self.authed::<(), _>(Method::GET, &base(client_id), None)
                .await
        }

        pub async fn get_webhook(&self, client_id: ApiClientId, id: WebhookId) -> Result<Webhook> {
            self.authed::<(), _>(Method::GET, &format!("{}/{id}", base(client_id)), None)
                .await
        }

        pub async fn update_webhook(
            &self,
            client_id: ApiClientId,
            id: WebhookId,
            req: &UpdateWebhook,
        ) -> Result<Webhook> {
            self.authed(
                Method::PATCH,
                &format!("{}/{id}", base(client_id)),
                Some(req),
            )
            .await
        }

        pub async fn delete_webhook(&self, client_id: ApiClientId, id: WebhookId) -> Result<()> {
            self.authed::<(), _>(Method::DELETE, &format!("{}/{id}", base(client_id)), None)
                .await
        }

        /// Queues a `webhook.test` event; the answer is its delivery.
        pub async fn test_webhook(
            &self,
            client_id: ApiClientId,
            id: WebhookId,
        ) -> Result<WebhookDelivery> {
            self.authed::<(), _>(
                Method::POST,
                &format!("{}/{id}/test", base(client_id)),
                None,
            )
            .await
        }

        /// A webhook's deliveries, newest first; `status` narrows (`Dead`: dead letters).
        pub async fn webhook_deliveries(
            &self,
            client_id: ApiClientId,
            id: WebhookId,
            status: Option<DeliveryStatus>,
            before_seq: Option<i64>,
            limit: Option<i64>,
        ) -> Result<WebhookDeliveryList> {
            let mut query = Vec::new();
            if let Some(s) = status {
                query.push(format!("status={s}"));
            }
            if let Some(b) = before_seq {
                query.push(format!("before_seq={b}"));
            }
            if let Some(l) = limit {
                query.push(format!("limit={l}"));
            }
            let q = if query.is_empty() {
                String::new()
            } else {
                format!("?{}", query.join("&"))
            };
            self.authed::<(), _>(
                Method::GET,
                &format!("{}/{id}/deliveries{q}", base(client_id)),
                None,
            )
            .await
        }

        /// Sends a finished delivery again (same event id and body, end of the queue).
        pub async fn redeliver(
            &self,
            client_id: ApiClientId,
            id: WebhookId,
            delivery: WebhookDeliveryId,
        ) -> Result<WebhookDelivery> {
            self.authed::<(), _>(
                Method::POST,
                &format!("{}/{id}/deliveries/{delivery}/redeliver", base(client_id)),
                None,
            )
            .await
        }
    }
}
