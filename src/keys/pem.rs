//! Public keys from PEM: SubjectPublicKeyInfo (`PUBLIC KEY`, RFC 5280 §4.1.2.7) for RSA,
//! EC P-256/P-384 and Ed25519, and PKCS#1 `RSA PUBLIC KEY`. Private keys and certificates are
//! refused: a verifier has no business holding a private key.
//!
//! The DER reader below handles exactly the structures these two formats use; anything else is
//! an error, never a guess.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A public key read from PEM, before policy checks.
pub(crate) enum PublicKey {
    /// Big-endian modulus and exponent.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An uncompressed point on P-256 (`p384: false`) or P-384.
    Ec { point: Vec<u8>, p384: bool },
    /// A raw Ed25519 public key.
    Ed25519(Vec<u8>),
}

pub(crate) const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
pub(crate) const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
pub(crate) const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
pub(crate) const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// Reads the first PEM block of `text`: its label and DER content.
pub(crate) fn block(text: &[u8]) -> Result<(String, Vec<u8>), String> {
    let text = std::str::from_utf8(text).map_err(|_| "PEM is not text".to_owned())?;
    let begin = text.find("-----BEGIN ").ok_or("no -----BEGIN line")?;
    let rest = &text[begin + 11..];
    let label_end = rest.find("-----").ok_or("malformed -----BEGIN line")?;
    let label = &rest[..label_end];
    let body = &rest[label_end + 5..];
    let end = body
        .find(&format!("-----END {label}-----"))
        .ok_or("no matching -----END line")?;
    let b64: String = body[..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = STANDARD
        .decode(b64)
        .map_err(|_| "PEM body is not base64".to_owned())?;
    Ok((label.to_owned(), der))
}

/// Reads the first PEM block of `text` as a public key.
pub(crate) fn parse(text: &[u8]) -> Result<PublicKey, String> {
    let (label, der) = block(text)?;
    match label.as_str() {
        "PUBLIC KEY" => spki(&der),
        "RSA PUBLIC KEY" => rsa_public_key(&der),
        other if other.contains("PRIVATE") => Err(format!(
            "this is a private key ({other}); give the verifier the public key only"
        )),
        other => Err(format!(
            "unsupported PEM type {other:?}; expected PUBLIC KEY"
        )),
    }
}

fn spki(der: &[u8]) -> Result<PublicKey, String> {
    let mut outer = Der::new(der).sequence()?;
    let mut algorithm = outer.sequence()?;
    let oid = algorithm.element(0x06)?;
    let key = outer.element(0x03)?;
    let key = match key.split_first() {
        Some((0, bits)) => bits,
        _ => return Err("public key BIT STRING has unused bits".into()),
    };
    match oid {
        OID_RSA => rsa_public_key(key),
        OID_EC => {
            let (p384, size) = match algorithm.element(0x06)? {
                OID_P256 => (false, 32),
                OID_P384 => (true, 48),
                _ => return Err("unsupported EC curve (P-256 and P-384 are)".into()),
            };
            if key.len() != 1 + 2 * size || key[0] != 0x04 {
                return Err("EC public key is not an uncompressed point".into());
            }
            Ok(PublicKey::Ec {
                point: key.to_vec(),
                p384,
            })
        }
        OID_ED25519 if key.len() == 32 => Ok(PublicKey::Ed25519(key.to_vec())),
        OID_ED25519 => Err("Ed25519 public key must be 32 bytes".into()),
        _ => Err("unsupported key algorithm (RSA, EC and Ed25519 are)".into()),
    }
}

fn rsa_public_key(der: &[u8]) -> Result<PublicKey, String> {
    let mut seq = Der::new(der).sequence()?;
    let n = unsigned(seq.element(0x02)?);
    let e = unsigned(seq.element(0x02)?);
    Ok(PublicKey::Rsa {
        n: n.to_vec(),
        e: e.to_vec(),
    })
}

/// Drops the sign byte DER puts before a positive INTEGER whose top bit is set.
pub(crate) fn unsigned(int: &[u8]) -> &[u8] {
    match int {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => int,
    }
}

/// A cursor over DER elements.
pub(crate) struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// The content of the next element, which must have `tag`.
    pub(crate) fn element(&mut self, tag: u8) -> Result<&'a [u8], String> {
        let (&actual, rest) = self.rest.split_first().ok_or("truncated DER")?;
        if actual != tag {
            return Err(format!(
                "unexpected DER tag {actual:#04x} (wanted {tag:#04x})"
            ));
        }
        let (&first, mut rest) = rest.split_first().ok_or("truncated DER")?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return Err("bad DER length".into());
            }
            let (bytes, tail) = rest.split_at(count);
            rest = tail;
            bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        if rest.len() < len {
            return Err("truncated DER".into());
        }
        let (content, tail) = rest.split_at(len);
        self.rest = tail;
        Ok(content)
    }

    /// The tag of the next element, if any.
    #[cfg(feature = "server")]
    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    pub(crate) fn sequence(&mut self) -> Result<Der<'a>, String> {
        self.element(0x30).map(Der::new)
    }
}
