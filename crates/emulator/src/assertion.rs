//! Client assertions as the identity platform checks them (its "certificate credentials"
//! page): a JWT signed with the private key of a certificate registered for the application.
//! The header names the certificate (`x5t#S256`, the SHA-256 thumbprint, or `x5t`, SHA-1) and
//! the algorithm (`PS256`, or `RS256`); the claims are `aud` = the token URL, `iss` = `sub` = the
//! client id, `jti`, and `nbf`/`exp` bounding when it is valid. Written here from that page, not
//! from the client's credential code.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

/// Why an assertion is refused: the identity platform's code and words.
#[derive(Debug, PartialEq)]
pub struct Refused {
    pub code: u64,
    pub description: String,
}

fn invalid(description: &str) -> Refused {
    Refused {
        code: 700027,
        description: format!("Client assertion failed signature validation. {description}"),
    }
}

/// Clock skew the validity window allows, in seconds.
const SKEW: u64 = 300;

/// Checks `assertion` for `client_id` at `tenant`'s token URL against the PEM certificates
/// registered for the application; `now` in seconds since the epoch.
pub fn verify(
    assertion: &str,
    client_id: &str,
    tenant: &str,
    certificates: &[String],
    now: u64,
) -> Result<(), Refused> {
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err(invalid("The assertion is not a signed JWT."));
    };
    let json = |part: &str| -> Option<Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
    };
    let (Some(h), Some(c)) = (json(header), json(claims)) else {
        return Err(invalid("The assertion's header or claims are not JSON."));
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| invalid("The signature is not base64url."))?;
    let der: Vec<Vec<u8>> = certificates.iter().filter_map(|p| pem(p)).collect();
    let named = |d: &&Vec<u8>| {
        let s256 = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, d));
        let s1 = URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            d,
        ));
        h["x5t#S256"].as_str() == Some(s256.as_str()) || h["x5t"].as_str() == Some(s1.as_str())
    };
    let Some(cert) = der.iter().find(named) else {
        return Err(invalid(&format!(
            "No certificate registered for application {client_id} has the thumbprint the assertion names."
        )));
    };
    let algorithm: &dyn ring::signature::VerificationAlgorithm = match h["alg"].as_str() {
        Some("PS256") => &ring::signature::RSA_PSS_2048_8192_SHA256,
        Some("RS256") => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        other => {
            return Err(invalid(&format!(
                "The algorithm {} is not supported.",
                other.unwrap_or("(none)")
            )));
        }
    };
    let key = rsa_public_key(cert).ok_or_else(|| invalid("The certificate holds no RSA key."))?;
    let signed = format!("{header}.{claims}");
    ring::signature::UnparsedPublicKey::new(algorithm, key)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| invalid("The signature does not verify with the registered certificate."))?;
    let token_url = format!("/{tenant}/oauth2/v2.0/token");
    let audience_ok = c["aud"].as_str().is_some_and(|a| a.ends_with(&token_url));
    let issuer_ok = c["iss"].as_str() == Some(client_id) && c["sub"].as_str() == Some(client_id);
    if !audience_ok || !issuer_ok {
        return Err(invalid("Its iss, sub or aud claim is wrong."));
    }
    if c["jti"].as_str().is_none_or(str::is_empty) {
        return Err(invalid("It has no jti claim."));
    }
    let exp = c["exp"].as_u64().unwrap_or(0);
    let nbf = c["nbf"].as_u64().unwrap_or(0);
    if exp + SKEW <= now || nbf > now + SKEW {
        return Err(Refused {
            code: 700024,
            description: "Client assertion is not within its valid time range.".into(),
        });
    }
    Ok(())
}

/// Checks a federated token (workload identity: a Kubernetes service account token) against
/// the app's federated identity credentials, as the identity platform matches them: `iss`,
/// `sub` and one of `aud` exactly, and `exp`. The issuer's signature is not checked here (that
/// would need its OIDC discovery document, which a loopback sandbox cannot reach).
pub fn verify_federated(
    token: &str,
    credentials: &[crate::backend::embedded::FederatedCredential],
    now: u64,
) -> Result<(), Refused> {
    let claims = token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .ok_or_else(|| invalid("The assertion is not a JWT."))?;
    let claim = |k: &str| claims[k].as_str().unwrap_or_default().to_string();
    let audiences: Vec<String> = match &claims["aud"] {
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Value::String(a) => vec![a.clone()],
        _ => vec![],
    };
    let matches = |c: &&crate::backend::embedded::FederatedCredential| {
        c.issuer == claim("iss")
            && c.subject == claim("sub")
            && audiences.iter().any(|a| c.audiences.contains(a))
    };
    if !credentials.iter().any(|c| matches(&c)) {
        return Err(Refused {
            code: 70021,
            description: format!(
                "No matching federated identity record found for presented assertion. Assertion Issuer: '{}'. Assertion Subject: '{}'. Assertion Audience: '{}'.",
                claim("iss"),
                claim("sub"),
                audiences.join(",")
            ),
        });
    }
    if let Some(exp) = claims["exp"].as_u64()
        && exp + SKEW <= now
    {
        return Err(Refused {
            code: 700024,
            description: "Client assertion is not within its valid time range.".into(),
        });
    }
    Ok(())
}

/// The DER of the first CERTIFICATE block of a PEM text.
fn pem(text: &str) -> Option<Vec<u8>> {
    let start = text.find("-----BEGIN CERTIFICATE-----")? + 27;
    let stop = text[start..].find("-----END CERTIFICATE-----")? + start;
    let body: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

/// One DER element: (tag, content, what follows).
fn tlv(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = d.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |l, b| (l << 8) | *b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The RSAPublicKey (PKCS #1) inside a certificate's subjectPublicKeyInfo (RFC 5280).
fn rsa_public_key(cert: &[u8]) -> Option<&[u8]> {
    let (_, certificate, _) = tlv(cert)?;
    let (_, tbs, _) = tlv(certificate)?;
    let mut rest = tbs;
    // [0] version, when present.
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.2;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        rest = tlv(rest)?.2;
    }
    let (_, spki, _) = tlv(rest)?;
    let after_algorithm = tlv(spki)?.2;
    let (tag, bits, _) = tlv(after_algorithm)?;
    if tag != 0x03 {
        return None;
    }
    // The BIT STRING's first byte counts unused bits (none for a key).
    bits.split_first().filter(|(u, _)| **u == 0).map(|(_, k)| k)
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
    fn the_public_key_is_found_in_the_test_certificate() {
        let der = pem(&fixture("test-only.crt")).unwrap();
        let key = rsa_public_key(&der).unwrap();
        // An RSAPublicKey is a SEQUENCE of the modulus and the exponent.
        assert_eq!(key[0], 0x30);
        assert!(key.len() > 256);
    }

    /// An assertion signed with `key` (PEM, PKCS #8), naming `cert`, valid from `nbf` to `exp`.
    fn signed(key: &str, cert: &str, nbf: u64, exp: u64) -> String {
        let block = |text: &str, label: &str| {
            let begin = format!("-----BEGIN {label}-----");
            let start = text.find(&begin).unwrap() + begin.len();
            let stop = text.find(&format!("-----END {label}-----")).unwrap();
            let body: String = text[start..stop]
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            STANDARD.decode(body).unwrap()
        };
        let pair = ring::signature::RsaKeyPair::from_pkcs8(&block(key, "PRIVATE KEY")).unwrap();
        let thumbprint = ring::digest::digest(&ring::digest::SHA256, &block(cert, "CERTIFICATE"));
        let header = serde_json::json!({"alg": "PS256", "typ": "JWT",
            "x5t#S256": URL_SAFE_NO_PAD.encode(thumbprint.as_ref())});
        let claims = serde_json::json!({"aud": "https://login.example/contoso.com/oauth2/v2.0/token",
            "iss": "app", "sub": "app", "jti": "j1", "nbf": nbf, "exp": exp});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; pair.public().modulus_len()];
        pair.sign(
            &ring::signature::RSA_PSS_SHA256,
            &ring::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut signature,
        )
        .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    #[test]
    fn an_assertion_verifies_against_the_registered_certificate_only() {
        let (key, cert) = (fixture("test-only.key"), fixture("test-only.crt"));
        let now = 2_000_000_000;
        let good = signed(&key, &cert, now, now + 600);
        assert_eq!(
            verify(
                &good,
                "app",
                "contoso.com",
                std::slice::from_ref(&cert),
                now
            ),
            Ok(())
        );
        // Another application, or a tenant the assertion was not made for.
        assert_eq!(
            verify(
                &good,
                "other",
                "contoso.com",
                std::slice::from_ref(&cert),
                now
            )
            .unwrap_err()
            .code,
            700027
        );
        assert_eq!(
            verify(
                &good,
                "app",
                "fabrikam.com",
                std::slice::from_ref(&cert),
                now
            )
            .unwrap_err()
            .code,
            700027
        );
        // No certificate registered, or another one.
        assert_eq!(
            verify(&good, "app", "contoso.com", &[], now)
                .unwrap_err()
                .code,
            700027
        );
        let other_cert = fixture("test-only-other.crt");
        assert_eq!(
            verify(&good, "app", "contoso.com", &[other_cert], now)
                .unwrap_err()
                .code,
            700027
        );
        // Signed with a wrong key, naming the registered certificate.
        let forged = signed(&fixture("test-only-other.key"), &cert, now, now + 600);
        let r = verify(
            &forged,
            "app",
            "contoso.com",
            std::slice::from_ref(&cert),
            now,
        )
        .unwrap_err();
        assert_eq!(r.code, 700027);
        assert!(
            r.description.contains("does not verify"),
            "{}",
            r.description
        );
        // Stale, or not valid yet.
        let stale = signed(&key, &cert, now - 7200, now - 3600);
        assert_eq!(
            verify(
                &stale,
                "app",
                "contoso.com",
                std::slice::from_ref(&cert),
                now
            )
            .unwrap_err()
            .code,
            700024
        );
        let early = signed(&key, &cert, now + 3600, now + 7200);
        assert_eq!(
            verify(
                &early,
                "app",
                "contoso.com",
                std::slice::from_ref(&cert),
                now
            )
            .unwrap_err()
            .code,
            700024
        );
    }

    #[test]
    fn garbage_is_refused_as_an_invalid_assertion() {
        let r = verify(
            "a.b.c",
            "app",
            "contoso.com",
            &[fixture("test-only.crt")],
            0,
        );
        assert_eq!(r.unwrap_err().code, 700027);
    }
}
