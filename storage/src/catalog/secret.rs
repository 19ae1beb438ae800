//! API key secrets: generated from the OS's random source, stored only as a
//! SHA-256 hash.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Prefix that makes a wattline key recognisable in logs and secret scanners.
const PREFIX: &str = "wl_";

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| Error::io("reading random bytes", e.into()))?;
    Ok(hex(&buf))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A new secret with 256 bits of entropy.
pub(crate) fn new_secret() -> Result<String> {
    Ok(format!("{PREFIX}{}", random_hex(32)?))
}

/// A new public key id.
pub(crate) fn new_key_id() -> Result<String> {
    Ok(format!("key_{}", random_hex(8)?))
}

/// The stored form of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_unique_and_hash_stably() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("wl_") && a.len() == 3 + 64);
        assert_eq!(hash_secret(&a), hash_secret(&a));
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
