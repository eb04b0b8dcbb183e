//! Tokens. Clients may be required to present an HMAC-signed token (JWT, HS256) at handshake
//! or WebSocket open, which names the client (`sub`), when it expires (`exp`), which channels
//! it may subscribe to (`channels`) and which client type it may claim (`client_type`).
//! Operators' endpoints (broadcast, notify, publish, cleanup, management) may be guarded by a
//! separate admin token sent as `Authorization: Bearer <token>`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a client token grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientClaims {
    /// Who the client is.
    pub sub: String,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// Channels it may subscribe to; absent or `["*"]` means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    /// The client type it must use, if restricted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_type: Option<String>,
}

impl ClientClaims {
    /// Whether the token allows subscribing to `channel`.
    pub fn allows_channel(&self, channel: &str) -> bool {
        match &self.channels {
            None => true,
            Some(channels) => channels.iter().any(|c| c == "*" || c == channel),
        }
    }

    /// Expiry in milliseconds since the Unix epoch.
    pub fn expires_at_unix_millis(&self) -> u64 {
        self.exp.saturating_mul(1000)
    }
}

/// Signs claims into a token (for operators' tooling and tests).
pub fn sign_client_token(secret: &[u8], claims: &ClientClaims) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise"));
    let signing_input = format!("{header}.{payload}");
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Why a client token was refused. Its text is the reason given to the client (with 401).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url parts, or a part that does not decode: the named part.
    Malformed(&'static str),
    /// The header names an algorithm other than HS256.
    UnsupportedAlgorithm(String),
    /// The signature does not match the secret.
    InvalidSignature,
    /// The payload is not valid claims (the reason).
    InvalidClaims(String),
    /// The token's `exp` has passed.
    Expired,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Malformed("token") => {
                f.write_str("malformed token: expected header.payload.signature")
            }
            TokenError::Malformed(part) => write!(f, "malformed token {part}"),
            TokenError::UnsupportedAlgorithm(alg) => {
                write!(f, "unsupported token algorithm {alg}; use HS256")
            }
            TokenError::InvalidSignature => f.write_str("invalid token signature"),
            TokenError::InvalidClaims(problem) => {
                write!(f, "token claims are not valid: {problem}")
            }
            TokenError::Expired => f.write_str("token expired"),
        }
    }
}

impl std::error::Error for TokenError {}

/// Verifies a token's signature (HS256 only) and expiry against `now_unix_millis`.
pub fn verify_client_token(
    secret: &[u8],
    token: &str,
    now_unix_millis: u64,
) -> Result<ClientClaims, TokenError> {
    let mut parts = token.trim().split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("token"));
    };
    let header_json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed("header"))?;
    let header: serde_json::Value =
        serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed("header"))?;
    if header["alg"] != "HS256" {
        return Err(TokenError::UnsupportedAlgorithm(header["alg"].to_string()));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed("signature"))?;
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(header_b64_and_payload(token).as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| TokenError::InvalidSignature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed("payload"))?;
    let claims: ClientClaims =
        serde_json::from_slice(&payload).map_err(|e| TokenError::InvalidClaims(e.to_string()))?;
    if claims.expires_at_unix_millis() <= now_unix_millis {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

fn header_b64_and_payload(token: &str) -> &str {
    let token = token.trim();
    token.rfind('.').map_or(token, |at| &token[..at])
}

/// Checks an `Authorization: Bearer` header against the admin token, in constant time.
pub(crate) fn is_admin(admin_token: &str, authorization: Option<&str>) -> bool {
    let Some(presented) = authorization.and_then(bearer) else {
        return false;
    };
    // Compare MACs of both, so the comparison time does not depend on where they differ.
    let digest = |text: &str| {
        let mut mac = HmacSha256::new_from_slice(b"livebridge admin token").expect("any key");
        mac.update(text.as_bytes());
        mac.finalize().into_bytes()
    };
    digest(presented) == digest(admin_token)
}

/// A session opened with a token can only be taken over (resumed by a handshake, a `/ws`
/// upgrade or a `register`) by a client presenting a token of the same subject: a client id
/// that leaked does not hand the session to another token holder.
pub(crate) fn check_same_subject(
    owner: Option<&ClientClaims>,
    newcomer: Option<&ClientClaims>,
) -> Result<(), crate::CommandError> {
    match (owner, newcomer) {
        (Some(owner), Some(newcomer)) if owner.sub != newcomer.sub => Err(
            crate::CommandError::Forbidden("that session belongs to another token subject".into()),
        ),
        _ => Ok(()),
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> ClientClaims {
        ClientClaims {
            sub: "lightroom-plugin".to_string(),
            exp,
            channels: Some(vec!["jobs".to_string()]),
            client_type: Some("lightroom".to_string()),
        }
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let token = sign_client_token(b"secret", &claims(2_000));
        assert_eq!(
            verify_client_token(b"secret", &token, 1_999_999).unwrap(),
            claims(2_000)
        );
        assert_eq!(
            verify_client_token(b"secret", &token, 2_000_000).unwrap_err(),
            TokenError::Expired
        );
        assert_eq!(TokenError::Expired.to_string(), "token expired");
    }

    #[test]
    fn tampered_foreign_and_unsigned_tokens_are_refused() {
        let token = sign_client_token(b"secret", &claims(2_000));
        assert!(verify_client_token(b"other", &token, 0).is_err());
        let (head, _) = token.rsplit_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"x","exp":9999999999}"#);
        let header = head.split('.').next().unwrap();
        let forged = format!(
            "{header}.{forged_payload}.{}",
            token.rsplit('.').next().unwrap()
        );
        assert_eq!(
            verify_client_token(b"secret", &forged, 0).unwrap_err(),
            TokenError::InvalidSignature
        );
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"sub":"x","exp":9999999999}"#)
        );
        let refused = verify_client_token(b"secret", &none, 0).unwrap_err();
        assert_eq!(
            refused,
            TokenError::UnsupportedAlgorithm("\"none\"".to_string())
        );
        assert!(refused.to_string().contains("algorithm"));
        assert_eq!(
            verify_client_token(b"secret", "garbage", 0).unwrap_err(),
            TokenError::Malformed("token")
        );
    }

    #[test]
    fn channel_grants_and_admin_bearer() {
        let c = claims(1);
        assert!(c.allows_channel("jobs") && !c.allows_channel("system"));
        assert!(
            ClientClaims {
                channels: None,
                ..c.clone()
            }
            .allows_channel("system")
        );
        assert!(is_admin("s3cret", Some("Bearer s3cret")));
        assert!(!is_admin("s3cret", Some("Bearer s3cre")));
        assert!(!is_admin("s3cret", Some("Basic s3cret")));
        assert!(!is_admin("s3cret", None));
    }
}
