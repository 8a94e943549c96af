//! How seatkeeper proves who it is to the identity platform: a client secret, a certificate
//! (a client assertion: a JWT signed with its key, PS256, `x5t#S256` naming the certificate),
//! or workload identity federation (the projected service-account token, re-read at every
//! request because it rotates). Never printed.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;
use std::path::PathBuf;

#[derive(Clone)]
pub enum Credential {
    Secret(String),
    Certificate {
        key_pkcs8: Vec<u8>,
        cert_der: Vec<u8>,
    },
    Federated {
        token_file: PathBuf,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::Secret(_) => "Secret(redacted)",
            Credential::Certificate { .. } => "Certificate(redacted)",
            Credential::Federated { .. } => "Federated",
        })
    }
}

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

impl Credential {
    /// A certificate and its PKCS#8 private key, both PEM (a `kubernetes.io/tls` Secret).
    pub fn certificate(cert_pem: &str, key_pem: &str) -> Result<Credential, String> {
        let cert_der =
            pem_block(cert_pem, "CERTIFICATE").ok_or("tls.crt: not a PEM certificate")?;
        let key_pkcs8 = pem_block(key_pem, "PRIVATE KEY")
            .ok_or("tls.key: not a PEM PKCS#8 private key (BEGIN PRIVATE KEY)")?;
        ring::signature::RsaKeyPair::from_pkcs8(&key_pkcs8)
            .map_err(|_| "tls.key: not an RSA private key".to_string())?;
        Ok(Credential::Certificate {
            key_pkcs8,
            cert_der,
        })
    }

    /// The credential's fields of a client-credentials token request.
    pub fn form(
        &self,
        client_id: &str,
        token_url: &str,
    ) -> Result<Vec<(&'static str, String)>, String> {
        Ok(match self {
            Credential::Secret(s) => vec![("client_secret", s.clone())],
            Credential::Certificate {
                key_pkcs8,
                cert_der,
            } => vec![
                ("client_assertion_type", ASSERTION_TYPE.into()),
                (
                    "client_assertion",
                    assertion(key_pkcs8, cert_der, client_id, token_url)?,
                ),
            ],
            Credential::Federated { token_file } => {
                let token = std::fs::read_to_string(token_file).map_err(|e| {
                    format!("the federated token file {}: {e}", token_file.display())
                })?;
                vec![
                    ("client_assertion_type", ASSERTION_TYPE.into()),
                    ("client_assertion", token.trim().to_string()),
                ]
            }
        })
    }
}

/// A client assertion: `iss` = `sub` = the client id, `aud` = the token URL, valid ten minutes.
fn assertion(
    key_pkcs8: &[u8],
    cert_der: &[u8],
    client_id: &str,
    aud: &str,
) -> Result<String, String> {
    let key = ring::signature::RsaKeyPair::from_pkcs8(key_pkcs8)
        .map_err(|_| "the certificate's key cannot sign".to_string())?;
    let thumbprint = ring::digest::digest(&ring::digest::SHA256, cert_der);
    let header = json!({"alg": "PS256", "typ": "JWT",
        "x5t#S256": URL_SAFE_NO_PAD.encode(thumbprint.as_ref())});
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let jti = crate::guid::guid(
        "jti",
        &format!("{client_id}{now}{:?}", std::time::Instant::now()),
    );
    let claims = json!({"aud": aud, "iss": client_id, "sub": client_id, "jti": jti,
        "nbf": now, "iat": now, "exp": now + 600});
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PSS_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "signing the client assertion failed".to_string())?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// The DER inside a PEM block of this label.
fn pem_block(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = pem[start..].find(&end)? + start;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

/// The claims of a JWT (no signature check): what the emulator looks at.
pub fn claims_of(jwt: &str) -> Option<serde_json::Value> {
    let payload = jwt.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/../../tests/fixtures/microsoft/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn a_certificate_makes_a_signed_client_assertion_for_the_token_url() {
        let c =
            Credential::certificate(&fixture("test-only.crt"), &fixture("test-only.key")).unwrap();
        let form = c
            .form("app", "https://login/contoso.com/oauth2/v2.0/token")
            .unwrap();
        assert_eq!(form[0].1, ASSERTION_TYPE);
        let jwt = &form[1].1;
        assert_eq!(jwt.split('.').count(), 3);
        let claims = claims_of(jwt).unwrap();
        assert_eq!(claims["iss"], "app");
        assert_eq!(claims["sub"], "app");
        assert_eq!(claims["aud"], "https://login/contoso.com/oauth2/v2.0/token");
        assert!(format!("{c:?}").contains("redacted"));
        assert!(Credential::certificate("nope", &fixture("test-only.key")).is_err());
    }
}
