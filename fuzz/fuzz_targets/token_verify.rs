//! `Authenticator::verify` on raw strings and on mutations of tokens minted at start-up.
//!
//! Input: the first byte picks the mode, the rest drives it.
//! - raw: the bytes (lossily UTF-8) are the token;
//! - edit: a minted token, then edits of 4 bytes each (`op`, position high/low, value): flip a
//!   bit, set, insert or delete a byte, truncate, put a base64url character, swap or repeat
//!   segments;
//! - segment: a minted token with one segment (header, payload or signature) replaced by the
//!   base64url encoding of the remaining bytes, so the fuzzer writes header and claims JSON.
//!
//! Oracle (see `tower_oauth2_fuzz::check`): nothing verifies but a minted token (for ECDSA, a
//! string with a minted signing input); nothing panics; the authenticator with the token cache
//! gives the same verdict as the one without.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tower_oauth2::Authenticator;
use tower_oauth2_fuzz::{b64, check, minted};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn authenticators() -> &'static (Authenticator, Authenticator) {
    static AUTH: OnceLock<(Authenticator, Authenticator)> = OnceLock::new();
    AUTH.get_or_init(|| {
        if let Ok(dir) = std::env::var("TOWER_OAUTH2_FUZZ_DUMP_MINTED") {
            dump(&dir);
        }
        (
            tower_oauth2_fuzz::authenticator(false),
            tower_oauth2_fuzz::authenticator(true),
        )
    })
}

/// Writes seed inputs for this target: each minted token in raw mode, unedited in edit mode,
/// and with its payload replaced by its own JSON in segment mode.
fn dump(dir: &str) {
    std::fs::create_dir_all(dir).expect("seed directory");
    for (i, m) in minted().iter().enumerate() {
        let mut raw = vec![0u8];
        raw.extend_from_slice(m.token.as_bytes());
        std::fs::write(format!("{dir}/raw-{i:02}-{:?}", m.alg), raw).expect("seed");
        std::fs::write(format!("{dir}/edit-{i:02}-{:?}", m.alg), [1, i as u8]).expect("seed");
        let payload = m.signing_input.split('.').nth(1).unwrap_or_default();
        let mut segment = vec![2, i as u8, 1];
        segment.extend(
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap_or_default(),
        );
        std::fs::write(format!("{dir}/segment-{i:02}-{:?}", m.alg), segment).expect("seed");
    }
}

fn edit(token: &str, ops: &[u8]) -> Vec<u8> {
    let mut bytes = token.as_bytes().to_vec();
    for op in ops.chunks_exact(4) {
        let at = usize::from(u16::from_be_bytes([op[1], op[2]]));
        let value = op[3];
        let len = bytes.len();
        match op[0] % 9 {
            0 if len > 0 => bytes[at % len] ^= 1 << (value % 8),
            1 if len > 0 => bytes[at % len] = value,
            2 => bytes.insert(at % (len + 1), value),
            3 if len > 0 => {
                bytes.remove(at % len);
            }
            4 => bytes.truncate(at % (len + 1)),
            5 if len > 0 => bytes[at % len] = ALPHABET[usize::from(value % 64)],
            6 => {
                // Swap two segments.
                let mut parts: Vec<Vec<u8>> =
                    bytes.split(|b| *b == b'.').map(<[u8]>::to_vec).collect();
                let n = parts.len();
                parts.swap(usize::from(value) % n, (usize::from(value) / 16) % n);
                bytes = parts.join(&b'.');
            }
            7 => {
                // Repeat one segment (or the whole token) after a dot.
                let parts: Vec<&[u8]> = bytes.split(|b| *b == b'.').collect();
                let extra = match usize::from(value) % (parts.len() + 1) {
                    i if i < parts.len() => parts[i].to_vec(),
                    _ => bytes.clone(),
                };
                bytes.push(b'.');
                bytes.extend(extra);
            }
            8 => {
                // Another minted token's segment in place of this one's.
                let others = minted();
                let other = &others[usize::from(value) % others.len()].token;
                let segment = at % 3;
                let mut parts: Vec<Vec<u8>> =
                    bytes.split(|b| *b == b'.').map(<[u8]>::to_vec).collect();
                if let (Some(part), Some(theirs)) =
                    (parts.get_mut(segment), other.split('.').nth(segment))
                {
                    *part = theirs.as_bytes().to_vec();
                }
                bytes = parts.join(&b'.');
            }
            _ => {}
        }
    }
    bytes
}

fn candidate(data: &[u8]) -> Option<String> {
    let (&mode, rest) = data.split_first()?;
    let tokens = minted();
    let bytes = match mode % 3 {
        0 => rest.to_vec(),
        1 => {
            let (&which, ops) = rest.split_first()?;
            edit(&tokens[usize::from(which) % tokens.len()].token, ops)
        }
        _ => {
            let [which, segment, content @ ..] = rest else {
                return None;
            };
            let token = &tokens[usize::from(*which) % tokens.len()].token;
            let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
            parts[usize::from(*segment) % 3] = b64(content);
            parts.join(".").into_bytes()
        }
    };
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fuzz_target!(|data: &[u8]| {
    let (plain, cached) = authenticators();
    let token = candidate(data).unwrap_or_default();
    let result = plain.verify(&token);
    check(&token, &result);
    // Twice through the cache: a miss, then (for a verified token) a hit.
    for _ in 0..2 {
        let again = cached.verify(&token);
        check(&token, &again);
        assert_eq!(
            result.is_ok(),
            again.is_ok(),
            "the cached authenticator disagrees on {token:?}"
        );
    }
});
