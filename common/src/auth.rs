//! Identity: signed bearer tokens (JWT) checked by both services.
//!
//! A caller sends `Authorization: Bearer <token>`; [`Verifier`] checks its
//! signature, expiry, issuer and audience against keys from [`AuthSettings`]
//! (an HS256 secret, an RS256/EdDSA public key in PEM, or a JWKS file — so a
//! real identity provider can issue the tokens). The handlers take the
//! caller as an extractor: [`Caller`] (any valid token), [`Buyer`] (its
//! subject is a user id) or [`Admin`] (it carries the admin role); a missing
//! or bad token is `401 UNAUTHENTICATED`, a valid one without the right role
//! `403 FORBIDDEN` (one [`AuthError`] mapping). [`Signer`] mints tokens with
//! the service's own key: dev tokens, the CLI, the batch runner's buyers and
//! order-service's calls to stock-service.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::{Ready, ready};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::UserId;
use crate::http::{ApiFailure, Failure};

/// A secret setting: read from configuration, never printed.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"[redacted]\""
        })
    }
}

/// How tokens are checked and minted; the same block in both services.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// The `iss` every token must carry (and minted tokens get).
    pub issuer: String,
    /// The `aud` every token must carry (and minted tokens get).
    pub audience: String,
    /// A shared HS256 secret (at least 32 bytes): checks and mints tokens.
    pub hs256_secret: Secret,
    /// An RS256 or EdDSA public key (PEM) of an identity provider.
    pub public_key_file: String,
    /// A JWKS file (`{"keys": [...]}`, RSA or OKP keys chosen by `kid`).
    pub jwks_file: String,
    /// An RS256 or EdDSA private key (PEM) to mint tokens with when there is
    /// no HS256 secret; its public half must be among the checking keys.
    pub signing_key_file: String,
    /// The `kid` header of minted tokens (to pick the key out of a JWKS).
    pub signing_key_id: String,
    /// The role (in the token's `roles` claim) that admin operations need.
    pub admin_role: String,
    /// Lifetime of minted tokens.
    pub token_ttl_secs: u64,
    /// Clock skew allowed on `exp`/`nbf`.
    pub leeway_secs: u64,
    /// `POST /api/auth/dev-token` mints any token for anyone: local use only.
    pub dev_tokens: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuer: "seckill".into(),
            audience: "seckill-api".into(),
            hs256_secret: Secret::default(),
            public_key_file: String::new(),
            jwks_file: String::new(),
            signing_key_file: String::new(),
            signing_key_id: String::new(),
            admin_role: "admin".into(),
            token_ttl_secs: 3600,
            leeway_secs: 30,
            dev_tokens: false,
        }
    }
}

/// What is wrong with the auth settings (at start-up).
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(
        "auth: no key to check tokens with; set auth.hs256_secret (APP_AUTH__HS256_SECRET), auth.public_key_file or auth.jwks_file"
    )]
    NoKey,
    #[error("auth.hs256_secret must be at least 32 bytes, got {0}")]
    ShortSecret(usize),
    #[error("auth: reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("auth: {path} is not an RS256 or EdDSA key in PEM: {reason}")]
    BadPem { path: String, reason: String },
    #[error("auth: {path} is not a usable JWKS: {reason}")]
    BadJwks { path: String, reason: String },
    #[error("auth: no key to mint tokens with; set auth.hs256_secret or auth.signing_key_file")]
    NoSigningKey,
}

/// A token's claims as minted here (`roles` may hold the admin role).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// The claims read from a checked token (`aud` may be a list there, and is
/// checked by the library).
#[derive(Debug, Deserialize)]
struct CheckedClaims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// One key that checks signatures, with the algorithms it may check.
struct CheckingKey {
    kid: Option<String>,
    key: DecodingKey,
    algorithm: Algorithm,
}

/// Checks bearer tokens; built once at start-up from [`AuthSettings`].
pub struct Verifier {
    keys: Vec<CheckingKey>,
    /// The checks of each algorithm a key has, made once (not per request).
    validations: HashMap<Algorithm, Validation>,
    issuer: String,
    audience: String,
    admin_role: String,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

fn read(path: &str) -> Result<Vec<u8>, AuthConfigError> {
    std::fs::read(path).map_err(|source| AuthConfigError::Read {
        path: path.into(),
        source,
    })
}

/// An RS256 or EdDSA PEM key: `(algorithm, key)` made by `rsa` or `ed`.
fn pem_key<K>(
    path: &str,
    rsa: impl Fn(&[u8]) -> jsonwebtoken::errors::Result<K>,
    ed: impl Fn(&[u8]) -> jsonwebtoken::errors::Result<K>,
) -> Result<(Algorithm, K), AuthConfigError> {
    let pem = read(path)?;
    match rsa(&pem) {
        Ok(key) => Ok((Algorithm::RS256, key)),
        Err(rsa_err) => ed(&pem)
            .map(|key| (Algorithm::EdDSA, key))
            .map_err(|ed_err| AuthConfigError::BadPem {
                path: path.into(),
                reason: format!("as RSA: {rsa_err}; as Ed25519: {ed_err}"),
            }),
    }
}

fn hs256_secret(settings: &AuthSettings) -> Result<Option<&[u8]>, AuthConfigError> {
    let secret = settings.hs256_secret.expose().as_bytes();
    match secret.len() {
        0 => Ok(None),
        n if n < 32 => Err(AuthConfigError::ShortSecret(n)),
        _ => Ok(Some(secret)),
    }
}

fn jwks_keys(path: &str) -> Result<Vec<CheckingKey>, AuthConfigError> {
    let bad = |reason: String| AuthConfigError::BadJwks {
        path: path.into(),
        reason,
    };
    let set: JwkSet = serde_json::from_slice(&read(path)?).map_err(|e| bad(e.to_string()))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
            // EC and symmetric keys are not offered by this service.
            _ => continue,
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(e.to_string()))?;
        keys.push(CheckingKey {
            kid: jwk.common.key_id.clone(),
            key,
            algorithm,
        });
    }
    if keys.is_empty() {
        return Err(bad("it holds no RSA or Ed25519 key".into()));
    }
    Ok(keys)
}

impl Verifier {
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, AuthConfigError> {
        let mut keys = Vec::new();
        if let Some(secret) = hs256_secret(settings)? {
            keys.push(CheckingKey {
                kid: None,
                key: DecodingKey::from_secret(secret),
                algorithm: Algorithm::HS256,
            });
        }
        if !settings.public_key_file.is_empty() {
            let (algorithm, key) = pem_key(
                &settings.public_key_file,
                DecodingKey::from_rsa_pem,
                DecodingKey::from_ed_pem,
            )?;
            keys.push(CheckingKey {
                kid: None,
                key,
                algorithm,
            });
        }
        if !settings.jwks_file.is_empty() {
            keys.extend(jwks_keys(&settings.jwks_file)?);
        }
        if keys.is_empty() {
            return Err(AuthConfigError::NoKey);
        }
        let validations = keys
            .iter()
            .map(|k| {
                let mut validation = Validation::new(k.algorithm);
                validation.set_issuer(&[&settings.issuer]);
                validation.set_audience(&[&settings.audience]);
                validation.leeway = settings.leeway_secs;
                validation.required_spec_claims =
                    HashSet::from(["exp", "sub", "iss", "aud"].map(String::from));
                (k.algorithm, validation)
            })
            .collect();
        Ok(Self {
            keys,
            validations,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            admin_role: settings.admin_role.clone(),
        })
    }

    /// Checks a token: the key named by its `kid` (or each key of its
    /// algorithm), then expiry, issuer and audience.
    pub fn check(&self, token: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("the token is not a JWT"))?;
        let candidates = self.keys.iter().filter(|k| {
            k.algorithm == header.alg
                && match (&header.kid, &k.kid) {
                    (Some(wanted), Some(kid)) => wanted == kid,
                    _ => true,
                }
        });
        let mut reason = "no configured key checks this token's algorithm";
        for candidate in candidates {
            let Some(validation) = self.validations.get(&candidate.algorithm) else {
                continue;
            };
            match jsonwebtoken::decode::<CheckedClaims>(token, &candidate.key, validation) {
                Ok(data) => {
                    let admin = data.claims.roles.contains(&self.admin_role);
                    return Ok(Caller {
                        subject: data.claims.sub,
                        admin,
                    });
                }
                Err(err) => reason = invalid_reason(&err),
            }
        }
        Err(AuthError::Invalid(reason))
    }
}

fn invalid_reason(err: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match err.kind() {
        K::ExpiredSignature => "the token has expired",
        K::ImmatureSignature => "the token is not valid yet",
        K::InvalidIssuer => "the token was issued by someone else",
        K::InvalidAudience => "the token is for another audience",
        K::MissingRequiredClaim(_) => "the token lacks a required claim (sub, exp, iss, aud)",
        K::InvalidSignature => "the token's signature does not match",
        _ => "the token cannot be read",
    }
}

/// A minted token and when it expires.
#[derive(Debug, Clone, Serialize)]
pub struct MintedToken {
    pub token: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Mints tokens with the service's own key (HS256 secret or a PEM private key).
pub struct Signer {
    key: EncodingKey,
    header: Header,
    issuer: String,
    audience: String,
    admin_role: String,
    ttl: Duration,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("algorithm", &self.header.alg)
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl Signer {
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, AuthConfigError> {
        let (algorithm, key) = if let Some(secret) = hs256_secret(settings)? {
            (Algorithm::HS256, EncodingKey::from_secret(secret))
        } else if !settings.signing_key_file.is_empty() {
            pem_key(
                &settings.signing_key_file,
                EncodingKey::from_rsa_pem,
                EncodingKey::from_ed_pem,
            )?
        } else {
            return Err(AuthConfigError::NoSigningKey);
        };
        let mut header = Header::new(algorithm);
        if !settings.signing_key_id.is_empty() {
            header.kid = Some(settings.signing_key_id.clone());
        }
        Ok(Self {
            key,
            header,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            admin_role: settings.admin_role.clone(),
            ttl: Duration::from_secs(settings.token_ttl_secs.max(1)),
        })
    }

    /// A token for `subject`, with the admin role when `admin`.
    pub fn mint(&self, subject: &str, admin: bool) -> MintedToken {
        let now = chrono::Utc::now();
        let expires_at = now + self.ttl;
        let mut roles = vec!["buyer".to_owned()];
        if admin {
            roles.push(self.admin_role.clone());
        }
        let claims = Claims {
            sub: subject.to_owned(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            roles,
        };
        let token = jsonwebtoken::encode(&self.header, &claims, &self.key)
            .expect("claims of plain strings and numbers always encode");
        MintedToken { token, expires_at }
    }

    /// A buyer's token.
    pub fn buyer(&self, user: UserId) -> MintedToken {
        self.mint(&user.get().to_string(), false)
    }
}

/// Why a request was refused by identity.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("{0}")]
    Invalid(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
}

crate::impl_response_error!(AuthError);

impl ApiFailure for AuthError {
    fn failure(&self) -> Failure {
        match self {
            Self::Missing => Failure::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "sign in: send Authorization: Bearer <token>",
            ),
            Self::Invalid(why) => Failure::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", *why),
            Self::Forbidden(why) => Failure::new(StatusCode::FORBIDDEN, "FORBIDDEN", *why),
        }
    }
}

/// Whoever a valid token names.
#[derive(Debug, Clone)]
pub struct Caller {
    pub subject: String,
    pub admin: bool,
}

impl Caller {
    /// The buyer this caller is: its subject must be a user id.
    pub fn buyer(&self) -> Result<UserId, AuthError> {
        UserId::parse_text(&self.subject)
            .map_err(|_| AuthError::Forbidden("this token's subject is not a buyer's user id"))
    }

    /// Whether this caller may act for `user` (itself, or an admin).
    pub fn may_see(&self, user: UserId) -> bool {
        self.admin || self.buyer().is_ok_and(|me| me == user)
    }
}

/// The bearer token of a request, checked.
fn caller_of(request: &HttpRequest) -> Result<Caller, AuthError> {
    let verifier = request
        .app_data::<web::Data<Verifier>>()
        .expect("every App registers the Verifier");
    let header = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::Invalid(
            "the Authorization header must be `Bearer <token>`",
        ))?;
    verifier.check(token)
}

impl FromRequest for Caller {
    type Error = AuthError;
    type Future = Ready<Result<Self, AuthError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(caller_of(request))
    }
}

/// A signed-in buyer: the token's subject as a user id (an admin's token
/// with a numeric subject buys as that user too).
#[derive(Debug, Clone, Copy)]
pub struct Buyer {
    pub user: UserId,
    pub admin: bool,
}

impl FromRequest for Buyer {
    type Error = AuthError;
    type Future = Ready<Result<Self, AuthError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(caller_of(request).and_then(|caller| {
            Ok(Self {
                user: caller.buyer()?,
                admin: caller.admin,
            })
        }))
    }
}

/// A caller with the admin role.
#[derive(Debug, Clone)]
pub struct Admin {
    pub subject: String,
}

impl FromRequest for Admin {
    type Error = AuthError;
    type Future = Ready<Result<Self, AuthError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(caller_of(request).and_then(|caller| {
            if caller.admin {
                Ok(Self {
                    subject: caller.subject,
                })
            } else {
                Err(AuthError::Forbidden("this needs the admin role"))
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AuthSettings {
        AuthSettings {
            hs256_secret: Secret::new("0123456789abcdef0123456789abcdef"),
            ..AuthSettings::default()
        }
    }

    #[test]
    fn a_minted_token_checks_and_names_its_subject_and_role() {
        let s = settings();
        let signer = Signer::from_settings(&s).unwrap();
        let verifier = Verifier::from_settings(&s).unwrap();
        let buyer = verifier.check(&signer.buyer(UserId::parse(42).unwrap()).token);
        let buyer = buyer.unwrap();
        assert_eq!(buyer.subject, "42");
        assert!(!buyer.admin);
        assert_eq!(buyer.buyer().unwrap().get(), 42);
        let admin = verifier.check(&signer.mint("ops", true).token).unwrap();
        assert!(admin.admin);
        assert!(matches!(admin.buyer(), Err(AuthError::Forbidden(_))));
    }

    #[test]
    fn a_token_of_another_key_issuer_audience_or_past_expiry_is_refused() {
        let s = settings();
        let verifier = Verifier::from_settings(&s).unwrap();
        let other_key = AuthSettings {
            hs256_secret: Secret::new("another secret of at least 32 bytes!"),
            ..s.clone()
        };
        let other_issuer = AuthSettings {
            issuer: "someone-else".into(),
            ..s.clone()
        };
        let other_audience = AuthSettings {
            audience: "another-api".into(),
            ..s.clone()
        };
        for (case, settings, reason) in [
            ("key", other_key, "signature"),
            ("issuer", other_issuer, "issued by someone else"),
            ("audience", other_audience, "another audience"),
        ] {
            let token = Signer::from_settings(&settings)
                .unwrap()
                .mint("1", true)
                .token;
            match verifier.check(&token) {
                Err(AuthError::Invalid(why)) => assert!(why.contains(reason), "{case}: {why}"),
                other => panic!("{case}: {other:?}"),
            }
        }
        let claims = Claims {
            sub: "1".into(),
            iss: s.issuer.clone(),
            aud: s.audience.clone(),
            iat: 0,
            exp: chrono::Utc::now().timestamp() - 3600,
            roles: vec![],
        };
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(s.hs256_secret.expose().as_bytes()),
        )
        .unwrap();
        assert!(matches!(
            verifier.check(&expired),
            Err(AuthError::Invalid("the token has expired"))
        ));
        assert!(matches!(
            verifier.check("not.a.token"),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn an_alg_none_or_hs256_token_signed_with_a_public_key_is_refused() {
        // Only the configured algorithm is checked: a token claiming `none`
        // or another algorithm than the key's is refused.
        let verifier = Verifier::from_settings(&settings()).unwrap();
        let unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIn0.";
        assert!(matches!(
            verifier.check(unsigned),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn settings_without_a_key_or_with_a_short_secret_are_refused_and_secrets_are_not_printed() {
        assert!(matches!(
            Verifier::from_settings(&AuthSettings::default()),
            Err(AuthConfigError::NoKey)
        ));
        let short = AuthSettings {
            hs256_secret: Secret::new("short"),
            ..AuthSettings::default()
        };
        assert!(matches!(
            Verifier::from_settings(&short),
            Err(AuthConfigError::ShortSecret(5))
        ));
        let printed = format!("{:?}", settings());
        assert!(!printed.contains("0123456789abcdef"), "{printed}");
        assert!(printed.contains("[redacted]"), "{printed}");
    }

    fn fixture(name: &str) -> String {
        format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    /// An identity provider's keys: it signs with its private key (here the
    /// fixture's), the services check with its public key or JWKS only.
    #[test]
    fn tokens_of_an_identity_provider_check_against_its_public_key_or_jwks() {
        for (private, public, kid) in [
            ("ed25519-private.pem", "ed25519-public.pem", "ed-1"),
            ("rsa-private.pem", "rsa-public.pem", "rsa-1"),
        ] {
            let provider = Signer::from_settings(&AuthSettings {
                signing_key_file: fixture(private),
                signing_key_id: kid.into(),
                ..AuthSettings::default()
            })
            .unwrap();
            let token = provider.mint("7", true).token;
            for checking in [
                AuthSettings {
                    public_key_file: fixture(public),
                    ..AuthSettings::default()
                },
                AuthSettings {
                    jwks_file: fixture("jwks.json"),
                    ..AuthSettings::default()
                },
            ] {
                let verifier = Verifier::from_settings(&checking).unwrap();
                let caller = verifier.check(&token).unwrap();
                assert_eq!(caller.subject, "7", "{private}");
                assert!(caller.admin);
            }
            // An HS256 token cannot pass for one of the provider's.
            let hs = Signer::from_settings(&settings())
                .unwrap()
                .mint("7", true)
                .token;
            let verifier = Verifier::from_settings(&AuthSettings {
                jwks_file: fixture("jwks.json"),
                ..AuthSettings::default()
            })
            .unwrap();
            assert!(matches!(verifier.check(&hs), Err(AuthError::Invalid(_))));
        }
        let bad = AuthSettings {
            public_key_file: fixture("jwks.json"),
            ..AuthSettings::default()
        };
        assert!(matches!(
            Verifier::from_settings(&bad),
            Err(AuthConfigError::BadPem { .. })
        ));
    }
}
